#!/usr/bin/perl

# Real clients through Docker's token flow, against conf-examples/token-auth.conf
# rendered with test paths (t/lib/ConfExample.pm): one nginx that is the
# issuer (location = /token, bcrypt htpasswd, the example's registry_access
# rules) and the registry, over TLS and HTTP/2 on 127.0.0.1 with a
# certificate of a test CA; the signing key made with the commands of the
# example's comment.  The access log gets the scheme of each request's
# Authorization header, the error log is at info (one "verified a token"
# line per verified token).
#
# - the Docker engine (t/lib/DockerEngine.pm; docker treats 127.0.0.1 as
#   an insecure registry, TLS without verification): `docker login` with
#   a wrong password fails (the issuer said 401) and stores nothing; with
#   the right one it succeeds (GET /token with offline_token=true; docker
#   keeps the refresh token, and the daemon then gets its tokens with the
#   OAuth2 refresh_token grant, POST /token); `docker push` (the store's
#   tag names the digest docker reports), `docker pull` back into an
#   emptied engine (same image id), `docker logout`; after it a push is refused; bob, who
#   may only pull alice/**, pulls alice/app but his push into alice/ is
#   refused with nothing stored (no repository, no blob, no upload
#   session); without login docker pulls public/hello (an anonymous
#   token), and not alice/app;
# - podman with the CA in --cert-dir (without it, login fails on the
#   certificate): login (a wrong password refused),
#   pull, push, pull back into an empty storage (same image id), logout,
#   an anonymous pull of public/hello;
# - skopeo --creds: inspect (the pushed digest), copy as bob (a pull),
#   a refused push as bob, an anonymous copy of public/hello;
# - every /v2/ request a client sent with credentials carried a Bearer
#   token, none Basic (Basic goes to /token only), and the error log shows
#   tokens of alice, bob, admin and anonymous verified.

use strict;
use warnings;

use Test::More;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Time::HiRes ();

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo slurp spew free_port start_nginx
                stop_nginx json_decode dir_image run_cmd);
use RegContainers qw(log_since upload_sessions);
use DockerEngine qw(need_dockerd write_oci_image);
use ConfExample qw(render_example make_ca make_cert htpasswd);

need_tools(qw(skopeo podman curl openssl));
need_dockerd();
plan(skip_all => 'podman runs as root here') unless $> == 0;

my $started = Time::HiRes::time();

my $tmp = tempdir('tokcl-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{REGTEST_LEAVE});

my %pw = (admin => 'pw-admin', alice => 'pw-alice', bob => 'pw-bob');

###############################################################################
# token-auth.conf, rendered and started

my $port = free_port();
my $reg = "127.0.0.1:$port";
my $p = "$tmp/token";

my $pki = "$tmp/pki";
make_ca($pki, 'ca', '/CN=token_clients.t CA');
make_cert($pki, 'server', '/CN=registry.example.com', 'ca',
          san => 'IP:127.0.0.1,DNS:registry.example.com');

my ($text, @missing) = render_example('token-auth.conf', $p,
    ports => { 443 => $port },
    subst => [
        [qr{https://registry\.example\.com/token}, "https://$reg/token"],
        [qr{^error_log (\S+) notice;}m, "error_log $p/log/error.log info;"],
        [qr{^\s*access_log \Q$p\E/log/registry\.access\.log;}m, <<"EOF"],
    map \$http_authorization \$test_auth_scheme {
        ""             "-";
        "~^(?<s>\\S+)"  \$s;
    }
    log_format test_scheme '\$remote_addr \$test_auth_scheme "\$request" \$status';
    access_log $p/log/registry.access.log test_scheme;
EOF
    ]);
is(join(', ', @missing), '', "token-auth.conf rendered with the test's paths");

make_path("$p/etc/tls");
spew("$p/etc/tls/registry.example.com.crt", slurp("$pki/server.crt"));
spew("$p/etc/tls/registry.example.com.key", slurp("$pki/server.key"));
spew("$p/etc/registry.htpasswd", htpasswd(%pw));

# the commands of the example's comment
for my $cmd (['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256',
              '-out', "$p/etc/registry-token.key"],
             ['pkey', '-in', "$p/etc/registry-token.key", '-pubout',
              '-out', "$p/etc/registry-token.pub"]) {
    my ($rc, $out) = run_cmd(['openssl', @$cmd]);
    is($rc, 0, "openssl $cmd->[0]") or diag($out);
}

spew("$p/nginx.conf", $text);
my $nginx = start_nginx("$p/nginx.conf", $p, $port);

my $access_log = "$p/log/registry.access.log";
my $error_log = "$p/log/error.log";

sub v2 { "$p/store/docker/registry/v2" }

sub tags_of {
    my ($repo) = @_;
    opendir(my $dh, v2() . "/repositories/$repo/_manifests/tags") or return [];
    return [sort grep { !/^\./ } readdir $dh];
}

sub blob_files { scalar(my @f = glob(v2() . '/blobs/sha256/*/*/data')) }

# the access log's lines since $offset: [scheme, method, path, status]
sub requests_since {
    my ($offset) = @_;
    return [map { /^\S+ (\S+) "(\S+) (\S+) [^"]*" (\d+)$/ ? [$1, $2, $3, $4] : () }
            split /\n/, log_since($access_log, $offset)];
}

# what a client sent with credentials on /v2/: the schemes, counted
sub v2_schemes {
    my ($reqs) = @_;
    my %n;
    $n{$_->[0]}++ for grep { $_->[2] =~ m{^/v2/} && $_->[0] ne '-' } @$reqs;
    return join ' ', map { "$_" } sort keys %n;
}

my $img = write_oci_image("$tmp/layout", 'v1',
    layers => [[['etc/'], ['etc/hello.txt', "hello from token_clients.t\n"]],
               [['opt/'], ['opt/data.bin', join('', map { chr } 0 .. 255) x 64]]],
    cmd => ['/bin/cat', '/etc/hello.txt']);

###############################################################################
# docker

my $e = DockerEngine->new;

{
    my ($rc, $out) = $e->load_oci("$tmp/layout", 'v1', 'regtest/token:v1');
    is($rc, 0, 'the image is loaded into dockerd') or diag($out);
}

# login: a wrong password, then the right one

{
    my $offset = -s $access_log;
    my ($rc, $out, $err) = $e->login($reg, 'alice', 'wrong');
    isnt($rc, 0, 'docker login with a wrong password fails');
    like($err, qr/unauthorized|401/i, '... unauthorized') or diag("$out$err");
    ok(!exists $e->config->{auths}{$reg}, '... and nothing was stored');
    ok((grep { $_->[2] =~ m{^/token\?} && $_->[0] eq 'Basic' && $_->[3] eq '401' }
        @{ requests_since($offset) }),
       '... the issuer refused its Basic credentials (401 on /token)')
        or diag(log_since($access_log, $offset));

    $offset = -s $access_log;
    ($rc, $out, $err) = $e->login($reg, 'alice', $pw{alice});
    is($rc, 0, 'docker login alice through the token flow') or diag("$out$err");
    like($out, qr/Login Succeeded/, '... Login Succeeded');
    ok($e->config->{auths}{$reg}{identitytoken},
       '... docker keeps the refresh token it was given (identitytoken)');
    my $reqs = requests_since($offset);
    ok((grep { $_->[2] =~ m{^/token\?.*offline_token=true} && $_->[0] eq 'Basic'
               && $_->[3] eq '200' } @$reqs),
       '... GET /token with Basic credentials and offline_token=true: 200')
        or diag(log_since($access_log, $offset));
    ok((grep { $_->[2] eq '/v2/' && $_->[0] eq 'Bearer' && $_->[3] eq '200' } @$reqs),
       '... and GET /v2/ answered 200 to its Bearer token');
}

# push, pull back into an emptied engine, logout

my $pushed;

{
    $e->docker_ok('docker tag', 'tag', 'regtest/token:v1', "$reg/alice/app:v1");
    my $offset = -s $access_log;

    my $out = $e->docker_ok('docker push alice/app:v1 as alice', 'push',
                            "$reg/alice/app:v1");
    ($pushed) = $out =~ /: digest: (sha256:[0-9a-f]{64}) /;
    like($pushed // '', qr/^sha256:/, '... docker reports a digest');
    is(RegTest::slurp(v2() . '/repositories/alice/app/_manifests/tags/v1/current/link'),
       $pushed // 'none', '... the store: tag v1 names that manifest');

    my $reqs = requests_since($offset);
    ok((grep { $_->[0] eq 'Bearer' && $_->[1] eq 'PUT'
               && $_->[2] eq '/v2/alice/app/manifests/v1' && $_->[3] eq '201' } @$reqs),
       '... the manifest PUT carried a Bearer token')
        or diag(log_since($access_log, $offset));
    is(v2_schemes($reqs), 'Bearer', '... every /v2/ request with credentials: Bearer, never Basic');
    ok((grep { $_->[1] eq 'POST' && $_->[2] eq '/token' && $_->[0] eq '-'
               && $_->[3] eq '200' } @$reqs),
       '... its tokens came from POST /token (the refresh_token grant), no password sent');
    like(RegTest::slurp($error_log), qr/registry token: verified a token of "alice"/,
         "... the error log: alice's token verified");

    ok($e->remove_all, 'docker rmi: no image left');
    $offset = -s $access_log;
    $out = $e->docker_ok('docker pull alice/app:v1 as alice', 'pull',
                         "$reg/alice/app:v1");
    like($out, qr/^Digest: \Q$pushed\E$/m, '... the pushed digest');
    is($e->inspect("$reg/alice/app:v1")->{Id}, $img->{config_digest},
       '... the same image id');
    is(v2_schemes(requests_since($offset)), 'Bearer', '... with Bearer tokens');

    my ($rc, $o, $err) = $e->logout($reg);
    is($rc, 0, 'docker logout') or diag("$o$err");
    ok(!exists $e->config->{auths}{$reg}, '... credentials removed');

    $e->docker_ok('docker tag', 'tag', "$reg/alice/app:v1", "$reg/alice/app:v2");
    ($rc, $o, $err) = $e->docker('push', "$reg/alice/app:v2");
    isnt($rc, 0, 'after logout, docker push alice/app:v2 fails');
    is_deeply(tags_of('alice/app'), ['v1'], '... no tag added');
}

# bob may pull alice/** but not push there

{
    my ($rc, $out, $err) = $e->login($reg, 'bob', $pw{bob});
    is($rc, 0, 'docker login bob') or diag("$out$err");

    $e->remove_all;
    $e->docker_ok('bob pulls alice/app:v1', 'pull', "$reg/alice/app:v1");
    $e->docker_ok('docker tag', 'tag', "$reg/alice/app:v1", "$reg/alice/bob:v1");

    my $blobs = blob_files();
    my $offset = -s $access_log;
    ($rc, $out, $err) = $e->docker('push', "$reg/alice/bob:v1");
    isnt($rc, 0, 'docker push alice/bob:v1 as bob fails');
    like($err, qr/denied|unauthorized|insufficient_scope/i, '... refused')
        or diag("$out$err");
    ok(!-e v2() . '/repositories/alice/bob', '... no repository alice/bob in the store');
    is(blob_files(), $blobs, '... no blob added');
    is(join(' ', upload_sessions("$p/store")), '', '... no upload session');
    my @posts = grep { $_->[1] eq 'POST' && $_->[2] =~ m{^/v2/alice/bob/} }
                @{ requests_since($offset) };
    ok(@posts && !(grep { $_->[3] ne '401' } @posts),
       '... its upload requests: 401 (the token grants pull only)')
        or diag(log_since($access_log, $offset));
    like(RegTest::slurp($error_log),
         qr/the token of "bob" does not grant what the request needs/,
         '... the error log: insufficient scope');

    $e->logout($reg);
}

# admin pushes public/hello; docker pulls it without login

{
    my ($rc, $out, $err) = $e->login($reg, 'admin', $pw{admin});
    is($rc, 0, 'docker login admin') or diag("$out$err");
    $e->docker_ok('docker tag', 'tag', "$reg/alice/app:v1", "$reg/public/hello:v1");
    $e->docker_ok('docker push public/hello:v1 as admin', 'push',
                  "$reg/public/hello:v1");
    $e->logout($reg);
    is_deeply($e->config->{auths} // {}, {}, 'no credentials left in docker');

    ok($e->remove_all, 'docker rmi: no image left');
    my $offset = -s $access_log;
    $out = $e->docker_ok('anonymous docker pull of public/hello:v1', 'pull',
                         "$reg/public/hello:v1");
    like($out, qr/Pull complete/, '... layers fetched');
    is($e->inspect("$reg/public/hello:v1")->{Id}, $img->{config_digest},
       '... the same image id');
    my $reqs = requests_since($offset);
    ok((grep { $_->[2] =~ m{^/token\?} && $_->[0] eq '-' && $_->[3] eq '200' } @$reqs),
       '... an anonymous token from /token') or diag(log_since($access_log, $offset));
    is(v2_schemes($reqs), 'Bearer', '... used as a Bearer token');
    like(RegTest::slurp($error_log), qr/registry token: verified a token of ""/,
         "... the error log: an anonymous token verified");

    ($rc, $out, $err) = $e->docker('pull', "$reg/alice/app:v1");
    isnt($rc, 0, 'anonymous docker pull of alice/app fails');
    ok(!%{ $e->inspect("$reg/alice/app:v1") }, '... no image');
}

###############################################################################
# podman, the server verified against the CA

{
    my $c = RegContainers->new("$tmp/podman");
    my $auth = "$tmp/podman-auth.json";
    my $certs = "$tmp/certs";
    make_path($certs);
    spew("$certs/ca.crt", slurp("$pki/ca.crt"));
    my @o = ('--cert-dir', $certs, '--authfile', $auth);

    my ($rc, $out, $err) = $c->podman('a', 'login', '--authfile', $auth,
                                      '-u', 'alice', '-p', $pw{alice}, $reg);
    isnt($rc, 0, 'podman login without the CA fails: podman verifies the server');
    like($err, qr/x509|certificate/, '... on the certificate') or diag("$out$err");

    my %o = (reg => $reg, auth => $auth, user => 'alice', opts => \@o);

    my $offset = -s $access_log;
    $c->podman_login(%o, password => $pw{alice},
                     refused => qr/invalid username\/password|unauthorized/i);
    $c->podman_push_back(%o, from => 'alice/app:v1', to => 'alice/podman:v1',
                         tags_of => \&tags_of,
                         config_digest => $img->{config_digest});

    my $reqs = requests_since($offset);
    is(v2_schemes($reqs), 'Bearer', 'podman: /v2/ requests with Bearer tokens only')
        or diag(log_since($access_log, $offset));
    ok((grep { $_->[0] eq 'Bearer' && $_->[1] eq 'PUT'
               && $_->[2] eq '/v2/alice/podman/manifests/v1' && $_->[3] eq '201' } @$reqs),
       '... the manifest PUT among them');

    $c->podman_logout(%o, from => 'alice/app:v1',
                      forbidden => 'team-b/podman:v1',
                      public => 'public/hello:v1',
                      denied => sub {
                          ok(!-e v2() . '/repositories/team-b', '... nothing stored');
                      });
}

###############################################################################
# skopeo --creds

{
    my $offset = -s $access_log;
    my ($rc, $out) = skopeo('inspect', '--tls-verify=false', '--creds',
                            "alice:$pw{alice}", "docker://$reg/alice/app:v1");
    is($rc, 0, 'skopeo inspect --creds alice') or diag($out);
    is((json_decode($out) || {})->{Digest}, $pushed, '... the pushed digest');

    ($rc, $out) = skopeo('copy', '--src-tls-verify=false', '--src-creds',
                         "bob:$pw{bob}", "docker://$reg/alice/app:v1",
                         "dir:$tmp/sk-bob");
    is($rc, 0, 'skopeo copy --src-creds bob: bob pulls alice/app') or diag($out);
    is(-f "$tmp/sk-bob/manifest.json" ? dir_image("$tmp/sk-bob")->{digest} : '',
       $pushed, '... the same manifest, byte for byte');

    ($rc, $out) = skopeo('copy', '--dest-tls-verify=false', '--dest-creds',
                         "bob:$pw{bob}", "oci:$tmp/layout:v1",
                         "docker://$reg/alice/skopeo:v1");
    isnt($rc, 0, 'skopeo push into alice/ as bob fails');
    ok(!-e v2() . '/repositories/alice/skopeo', '... nothing stored');

    is(v2_schemes(requests_since($offset)), 'Bearer',
       'skopeo: /v2/ requests with Bearer tokens only');

    ($rc, $out) = skopeo('copy', '--src-tls-verify=false',
                         "docker://$reg/public/hello:v1", "dir:$tmp/sk-anon");
    is($rc, 0, 'skopeo anonymous copy of public/hello') or diag($out);
}

# the whole run: Basic credentials only ever went to the issuer

{
    my $reqs = requests_since(0);
    is(scalar(grep { $_->[2] =~ m{^/v2/} && $_->[0] eq 'Basic' } @$reqs), 0,
       'no /v2/ request of the run carried Basic credentials');
    ok(scalar(grep { $_->[2] =~ m{^/token} && $_->[0] eq 'Basic' } @$reqs),
       '... they went to /token');
    my %verified = map { $_ => 1 }
                   RegTest::slurp($error_log) =~ /verified a token of "([^"]*)"/g;
    is(join(' ', sort keys %verified), ' admin alice bob',
       'tokens of alice, bob, admin and anonymous verified');
}

stop_nginx($nginx);
my @bad = grep { /\[(?:alert|emerg|crit)\]|exited on signal/ }
          split /\n/, RegTest::slurp($error_log);
is(join("\n", @bad), '', 'no alerts in error.log');

ok($e->stop, 'dockerd and containerd stopped');

note(sprintf('token_clients.t ran %.1f s', Time::HiRes::time() - $started));

done_testing();
