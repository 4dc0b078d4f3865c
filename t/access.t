#!/usr/bin/perl

# registry_access rules: a table of (user, request) -> status covering
# every action, the wildcard forms, ${user}, mounts across repositories,
# the catalog's filtering, auto mount and anonymous clients, with
# auth_basic (bcrypt) verifying whoever sends credentials.

use strict;
use warnings;

use Test::More;
use MIME::Base64;

use lib 't/lib';
use RegTest;

# the store, filled without rules
my $seed = RegTest->new();
my $root = $seed->root;

my %img;
for my $repo (qw(public/a public/a/b team-a/x alice/app bob/app carol/x)) {
    $img{$repo} = $seed->push_image($repo, 'v1');
}
$seed->stop();

my @users = qw(alice bob carol admin);
my $htpasswd = join '', map {
    "$_:" . crypt("pw-$_", '$2y$05$' . substr("saltsaltsaltsalt$_" x 2, 0, 22))
    . "\n"
} @users;

my $t = RegTest->new(
    root => $root,
    delete => 1,
    http_extra => <<'EOF',
    map $http_authorization $registry_realm {
        ""       off;
        default  "registry";
    }
EOF
    location_extra => <<'EOF');
            auth_basic $registry_realm;
            auth_basic_user_file htpasswd;
            registry_auto_mount on;

            registry_access admin     **          *;
            registry_access anonymous public/*    pull;
            registry_access alice     team-a/**   push;
            registry_access *         ${user}/**  *;
            registry_access *         public/*    pull;
            registry_access carol     **          pull;
            registry_access *         **          catalog;
EOF

RegTest::spew($t->dir . '/htpasswd', $htpasswd);

sub auth {
    my ($user, $password) = @_;
    return {} unless defined $user;
    $password //= "pw-$user";
    return { Authorization => 'Basic ' . encode_base64("$user:$password", '') };
}

sub request {
    my ($user, $method, $path, %o) = @_;
    my %h = (%{ auth($user) }, %{ $o{headers} || {} });
    return $t->req($method, $path, headers => \%h,
                   defined $o{content} ? (content => $o{content}) : ());
}

my $layer = sub { $img{$_[0]}{layers}[0] };

# (user, method, path, status[, JSON code])
my @table = (
    # anonymous: pull of public/* only; /v2/ challenges, since rules give
    # users more (clients send credentials only after that challenge)
    [undef, 'GET', '/v2/', 401, 'UNAUTHORIZED'],
    [undef, 'GET', '/v2/public/a/manifests/v1', 200],
    [undef, 'HEAD', '/v2/public/a/manifests/v1', 200],
    [undef, 'GET', '/v2/public/a/tags/list', 200],
    [undef, 'GET', '/v2/public/a/blobs/' . $layer->('public/a'), 200],
    [undef, 'GET', '/v2/public/a/b/manifests/v1', 401, 'UNAUTHORIZED'],
    [undef, 'GET', '/v2/team-a/x/manifests/v1', 401, 'UNAUTHORIZED'],
    [undef, 'POST', '/v2/public/a/blobs/uploads/', 401, 'UNAUTHORIZED'],
    [undef, 'GET', '/v2/_catalog', 401, 'UNAUTHORIZED'],

    # alice: push (and the pull it needs) under team-a/, her own
    # namespace, pull of public/*
    ['alice', 'GET', '/v2/', 200],
    ['alice', 'POST', '/v2/team-a/x/blobs/uploads/', 202],
    ['alice', 'POST', '/v2/team-a/new/deep/blobs/uploads/', 202],
    ['alice', 'GET', '/v2/team-a/x/manifests/v1', 200],
    ['alice', 'DELETE', '/v2/team-a/x/manifests/' . $img{'team-a/x'}{digest},
     403, 'DENIED'],
    ['alice', 'GET', '/v2/public/a/manifests/v1', 200],
    ['alice', 'POST', '/v2/public/a/blobs/uploads/', 403, 'DENIED'],
    ['alice', 'GET', '/v2/public/a/b/tags/list', 403, 'DENIED'],
    ['alice', 'GET', '/v2/bob/app/manifests/v1', 403, 'DENIED'],
    ['alice', 'POST', '/v2/alice/app/blobs/uploads/', 202],
    ['alice', 'GET', '/v2/team-b/x/tags/list', 403, 'DENIED'],

    # bob: everything in bob/, delete included
    ['bob', 'GET', '/v2/bob/app/tags/list', 200],
    ['bob', 'POST', '/v2/bob/app/blobs/uploads/', 202],
    ['bob', 'GET', '/v2/team-a/x/manifests/v1', 403, 'DENIED'],
    ['bob', 'GET', '/v2/alice/app/manifests/v1', 403, 'DENIED'],
    ['bob', 'DELETE', '/v2/bob/app/manifests/' . $img{'bob/app'}{digest}, 202],

    # carol pulls everything, pushes only in carol/
    ['carol', 'GET', '/v2/team-a/x/manifests/v1', 200],
    ['carol', 'GET', '/v2/public/a/b/manifests/v1', 200],
    ['carol', 'POST', '/v2/team-a/x/blobs/uploads/', 403, 'DENIED'],
    ['carol', 'POST', '/v2/carol/x/blobs/uploads/', 202],

    # admin: everything
    ['admin', 'DELETE', '/v2/public/a/b/manifests/'
     . $img{'public/a/b'}{digest}, 202],
    ['admin', 'POST', '/v2/anything/at/all/blobs/uploads/', 202],

    # a wrong password never reaches the rules: auth_basic's 401, in JSON
    [['alice', 'nope'], 'GET', '/v2/team-a/x/manifests/v1', 401,
     'UNAUTHORIZED'],
);

for my $row (@table) {
    my ($who, $method, $path, $status, $code) = @$row;
    my ($user, $password) = ref $who ? @$who : ($who);
    my %h = %{ defined $user ? auth($user, $password) : {} };

    my $r = $t->req($method, $path, headers => \%h);
    my $name = sprintf '%s %s %s', $user // 'anonymous', $method, $path;

    is($r->{status}, $status, "$name: $status");
    is(RegTest::error_code($r), $code, "$name: $code") if $code;

    if ($status == 401) {
        like($r->{headers}{'www-authenticate'} // '', qr/^Basic realm="/,
             "$name: a Basic challenge");
    }
}

# the decision comes before the body is read: a refused monolithic push
# leaves no blob
{
    my $bytes = "refused bytes " . rand();
    my $d = RegTest::digest($bytes);
    my $r = request('bob', 'POST', "/v2/team-a/x/blobs/uploads/?digest=$d",
                    content => $bytes);
    is($r->{status}, 403, 'refused monolithic push: 403');
    ok(!-e $t->blob_path($d), 'refused monolithic push: no blob stored');
}

# mounts: pull on "from", push on the target
{
    my $d = $layer->('bob/app');

    my $r = request('alice', 'POST',
                    "/v2/team-a/y/blobs/uploads/?mount=$d&from=bob/app");
    is($r->{status}, 403, 'mount from a repository alice may not pull: 403');
    ok(!-e $t->layer_link('team-a/y', $d), '... and nothing linked');

    $d = $layer->('public/a');
    $r = request('alice', 'POST',
                 "/v2/team-a/y/blobs/uploads/?mount=$d&from=public/a");
    is($r->{status}, 201, 'mount from a repository alice may pull: 201');
    ok(-e $t->layer_link('team-a/y', $d), '... linked');

    $r = request('alice', 'POST',
                 "/v2/public/a/blobs/uploads/?mount=$d&from=team-a/y");
    is($r->{status}, 403, 'mount into a repository alice may not push: 403');
}

# auto mount (without from) only for a user who may pull everything:
# otherwise 201 against 202 would tell whether any repository holds it
{
    my $d = $layer->('bob/app');

    my $r = request('alice', 'POST', "/v2/team-a/z/blobs/uploads/?mount=$d");
    is($r->{status}, 202, 'auto mount for alice: an upload session instead');
    ok(!-e $t->layer_link('team-a/z', $d), '... nothing linked');

    $r = request('admin', 'POST', "/v2/team-a/z/blobs/uploads/?mount=$d");
    is($r->{status}, 201, 'auto mount for admin, who pulls all: 201');
}

# the catalog lists what the user may pull, page by page
sub catalog {
    my ($user, $query) = @_;
    my $r = request($user, 'GET', '/v2/_catalog' . ($query // ''));
    return ($r, $r->{status} == 200
                ? JSON::PP->new->decode($r->{content})->{repositories} : []);
}

{
    my ($r, $repos) = catalog('alice');
    is($r->{status}, 200, 'catalog for alice: 200');
    is_deeply($repos, [qw(alice/app public/a team-a/new/deep team-a/x
                          team-a/y team-a/z)],
              'catalog for alice: only what she may pull')
        or diag explain $repos;

    ($r, $repos) = catalog('alice', '?n=2');
    is_deeply($repos, [qw(alice/app public/a)], 'alice, page 1 of n=2');
    like($r->{headers}{link} // '', qr/last=public\/a&n=2/, '... Link');

    ($r, $repos) = catalog('alice', '?n=2&last=public/a');
    is_deeply($repos, [qw(team-a/new/deep team-a/x)], 'alice, page 2');
    ok($r->{headers}{link}, '... Link, a page follows');

    ($r, $repos) = catalog('alice', '?n=2&last=team-a/y');
    is_deeply($repos, [qw(team-a/z)], 'alice, page 3');
    ok(!$r->{headers}{link}, '... last page, no Link');

    ($r, $repos) = catalog('bob');
    is_deeply($repos, [qw(bob/app public/a)], 'catalog for bob');

    ($r, $repos) = catalog('carol');
    ok(scalar(@$repos) >= 8 && (grep { $_ eq 'public/a/b' } @$repos),
       'catalog for carol: everything') or diag explain $repos;
}

$t->stop();

# no rules: today's behaviour, everyone may do everything
{
    my $open = RegTest->new(root => $root);
    is($open->req('GET', '/v2/_catalog')->{status}, 200,
       'no rules: anonymous catalog');
    is($open->req('POST', '/v2/team-a/x/blobs/uploads/')->{status}, 202,
       'no rules: anonymous push');
    $open->stop();
}

# registry_user: the user from a header an auth_request would set
{
    my $h = RegTest->new(root => $root, location_extra => <<'EOF');
            registry_user $http_x_user;
            registry_access dave team-a/** pull;
EOF
    is($h->req('GET', '/v2/team-a/x/tags/list',
               headers => { 'X-User' => 'dave' })->{status}, 200,
       'registry_user $http_x_user: dave pulls team-a/x');
    is($h->req('GET', '/v2/team-a/x/tags/list',
               headers => { 'X-User' => 'eve' })->{status}, 403,
       'registry_user $http_x_user: eve is denied');
    my $r = $h->req('GET', '/v2/team-a/x/tags/list');
    is($r->{status}, 401, 'registry_user empty: anonymous, 401');
    is($h->req('GET', '/v2/')->{status}, 401,
       '/v2/ without any anonymous rule: 401');
    $h->stop();
}

# rules for nobody but anonymous (a public mirror): /v2/ answers 200, no
# credentials could get more
{
    my $m = RegTest->new(root => $root, location_extra => <<'EOF');
            registry_access anonymous public/** pull;
EOF
    my $r = $m->req('GET', '/v2/');
    is($r->{status}, 200, 'anonymous rules only: /v2/ 200');
    ok(!$r->{headers}{'www-authenticate'}, '... no challenge');
    is($m->req('GET', '/v2/public/a/b/tags/list')->{status}, 200,
       'anonymous rules only: public/a/b pulled');
    is($m->req('GET', '/v2/team-a/x/tags/list')->{status}, 401,
       'anonymous rules only: team-a/x refused, 401');
    $m->stop();
}

# configuration errors, refused when nginx starts
for my $bad (['a/*** pull', qr/invalid repository pattern "a\/\*\*\*"/],
             ['a/* pull,write', qr/invalid actions "pull,write"/],
             ['a/* pull,', qr/invalid actions "pull,"/],
             ['A/b pull', qr/invalid repository pattern "A\/b"/],
             ['*/*/*/*/* pull', qr/invalid repository pattern/]) {
    my ($rule, $why) = @$bad;
    my $ok = eval {
        RegTest->new(root => $root, expect_in_log => qr/\[emerg\]/,
                     location_extra => "registry_access x $rule;");
    };
    ok(!$ok && $@ =~ $why, "registry_access x $rule: refused") or diag $@;
}

done_testing();
