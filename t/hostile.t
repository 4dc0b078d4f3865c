#!/usr/bin/perl

# Hostile input, generated from a fixed seed so a failure replays: random
# paths and methods under /v2/, mutated manifests, random Content-Range
# values.  Whatever comes in, the answer is a 2xx/3xx/4xx with the API
# version header (a JSON error body for 4xx), never a 5xx, never a crash,
# and nothing lands outside the store.

use strict;
use warnings;

use Test::More;
use File::Find;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $seed = $ENV{HOSTILE_SEED} // 20261123;
srand($seed);
diag("seed $seed (HOSTILE_SEED= replays another)");

my $t = RegTest->new(delete => 1);
my $img = $t->push_image('base/img', 'v1');
my @beside = sort glob($t->dir . '/*');

my @bad;     # "METHOD path -> status" of every answer that broke a rule

sub check {
    my ($what, $r, %allowed) = @_;

    # nginx's URI parser refuses some paths ("%zz", "%00") with its own
    # page, and a ".." may take a path out of location /v2/ (to the static
    # handler): the module never sees those.  Everything the module
    # answers carries the header; nginx's own pages are HTML.
    my $from_module = ($r->{headers}{'docker-distribution-api-version'} // '')
        eq 'registry/2.0';
    my $from_nginx = !$from_module && $r->{status} =~ /^4\d\d$/
        && ($r->{content} =~ m{<hr><center>nginx/} || $what =~ /^HEAD /);

    my $ok = $r->{status} < 500 && ($from_module || $from_nginx);

    if ($ok && $from_module && $r->{status} >= 400 && length $r->{content}) {
        my $e = eval { decode_json($r->{content}) };
        $ok = $e && ref $e->{errors} eq 'ARRAY' && $e->{errors}[0]{code};
        $ok &&= !%allowed || $allowed{ $e->{errors}[0]{code} };
    }

    push @bad, "$what -> $r->{status} $r->{content}" unless $ok;
}

sub pick { $_[int rand @_] }

# ---- random paths ----

my @segments = (
    'a', 'b0', 'img', 'base', 'A', 'a..b', '.', '..', '', '%2F', '%2f',
    '%00', '%2E%2E', '%', '%zz', 'blobs', 'manifests', 'uploads', 'tags',
    'list', 'referrers', '_catalog', '_layers', '_uploads', 'v1', 'latest',
    $img->{digest}, $img->{config}, 'sha256:', 'sha256:abc',
    'sha512:' . ('0' x 128), 'md5:' . ('0' x 32), 'x' x 300,
    '00000000-0000-4000-8000-000000000000', "\x{e9}t\x{e9}", '%C3%A9',
    '%20', '~', 'a;b', 'a?b=c',
);

for my $i (1 .. 1500) {
    my $path = '/v2/' . join('/', map { pick(@segments) } 1 .. 1 + int rand 6);
    $path .= '/' if rand() < 0.2;
    $path .= '?' . pick('n=1', 'n=-1', 'n=x', 'last=a', 'digest=x',
                        'digest=' . $img->{digest}, 'mount=x&from=..')
        if rand() < 0.3;

    my $method = pick(qw(GET HEAD PUT POST PATCH DELETE OPTIONS));
    my $body = rand() < 0.3 ? 'x' x int rand 2000 : undef;

    utf8::encode($path);
    check("$method $path",
          $t->req($method, $path, defined $body ? (content => $body) : ()));
}

# ---- mutated manifests ----

my $m = decode_json($img->{manifest});

my @mutations = (
    sub { delete $_[0]{ pick(keys %{ $_[0] }) } },
    sub { $_[0]{schemaVersion} = pick(1, 3, '2', undef, [], {}, 2.5, -1) },
    sub { $_[0]{mediaType} = pick('', 'x', 1, undef, [],
              'application/vnd.oci.image.index.v1+json') },
    sub { $_[0]{config} = pick(undef, [], 'x', {}, { digest => 'x' }) },
    sub { $_[0]{config}{size} = pick(-1, 'x', undef, 1e30, 1.5) },
    sub { $_[0]{config}{digest} = pick('sha256:' . 'g' x 64, '', undef,
              'sha256:' . '0' x 64, $img->{digest} . 'x') },
    sub { $_[0]{layers} = pick(undef, {}, 'x', [undef], [[]], [{}]) },
    sub { push @{ $_[0]{layers} }, pick(1, 'x', { digest => 'sha256:' }) },
    sub { $_[0]{manifests} = pick([], [{}], 'x') },
    sub { $_[0]{subject} = pick(undef, 'x', {}, [],
              { mediaType => 'x', digest => 'sha256:' . '1' x 64,
                size => 1 }) },
    sub { $_[0]{ 'k' x int rand 50 } = pick(undef, 1, 'v' x 1000) },
);

for my $i (1 .. 400) {
    my $copy = decode_json(encode_json($m));
    # a mutation may not apply after another one: the others still do
    eval { pick(@mutations)->($copy) } for 1 .. 1 + int rand 3;

    my $bytes = JSON::PP->new->canonical->allow_nonref->encode($copy);
    substr($bytes, int rand length $bytes) = '' if rand() < 0.1;

    my $r = $t->push_manifest('base/img', "m$i", $bytes,
        pick($img->{type}, 'application/json', 'text/plain', ''));

    check("PUT mutated manifest m$i", $r, map { $_ => 1 }
          qw(MANIFEST_INVALID MANIFEST_BLOB_UNKNOWN))
        unless $r->{status} == 201;
}

# ---- random Content-Range on an upload ----

my $r = $t->req('POST', '/v2/base/img/blobs/uploads/');
my ($loc) = $r->{headers}{location} =~ m{^(/v2/\S+)$};
my $offset = 0;

for my $i (1 .. 300) {
    my $range = pick("$offset-" . ($offset + 9), '0-9', '10-5', '-', 'x-y',
                     "bytes=$offset-" . ($offset + 9), "$offset-", '',
                     "99999999999999999999-1", "$offset-" . ($offset - 1));
    my $len = pick(10, 0, 9, 11);

    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => $range },
                 content => 'y' x $len);
    check("PATCH Content-Range: $range, $len bytes", $r);

    if ($r->{status} == 202) {
        ($offset) = $r->{headers}{range} =~ /^0-(\d+)$/;
        $offset++;
    }
}

is(scalar @bad, 0, 'no 5xx, no missing header, no bad error body')
    or diag(join "\n", @bad[0 .. ($#bad < 20 ? $#bad : 20)]);

# the upload still tells the truth about its offset
$r = $t->req('GET', $loc);
is($r->{status}, 204, 'upload survived the hostile chunks');
is($r->{headers}{range}, '0-' . ($offset - 1), 'its offset is where it was');

# the registry still serves what it served before
$r = $t->req('GET', '/v2/base/img/manifests/v1');
is($r->{content}, $img->{manifest}, 'original manifest intact');

# nothing but the store layout under the root, nothing outside it
my @odd;
find(sub {
    my $p = $File::Find::name;
    push @odd, $p if $p =~ /\.\.|%|\s/;
}, $t->root);
is_deeply(\@odd, [], 'no odd paths in the store');

is_deeply([sort glob($t->dir . '/*')], \@beside,
          'nothing created beside the store');

$t->stop;
done_testing();
