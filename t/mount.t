#!/usr/bin/perl

# Cross-repository blob mount: POST /v2/<name>/blobs/uploads/?mount=D&from=N
# links D into <name> without moving bytes (201) when N holds it as a
# layer, else starts a normal upload session (202).  Without `from`, D is
# mounted from anywhere in the store only under registry_auto_mount on (or
# `anonymous`: only for requests without an Authorization header); the
# default, off, never hands out a blob by its digest alone.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex sha512_hex);
use File::Path qw(make_path);
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $UUID = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

my $t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

sub hex_of { (split /:/, $_[0])[1] }

sub layer_link {
    my ($name, $d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return "$v2/repositories/$name/_layers/$alg/$hex/link";
}

sub mount {
    my ($t, $name, $query, %headers) = @_;
    return $t->req('POST', "/v2/$name/blobs/uploads/?$query",
                   %headers ? (headers => \%headers) : ());
}

# an upload session answer: 202, Location of an upload id in $name
sub is_session {
    my ($r, $name, $what) = @_;
    is($r->{status}, 202, "$what: 202");
    like($r->{headers}{location} // '',
         qr{^/v2/\Q$name\E/blobs/uploads/$UUID$}, "$what: upload location");
}

my $blob = join '', map { "mounted layer line $_\n" } 1 .. 500;
my $d = $t->push_blob('src/repo', $blob);

# sha256 of bytes pushed nowhere
my $nowhere = RegTest::digest('never pushed ' . rand());

# ---- from a repository holding the blob ----

my $r = $t->req('GET', "/v2/dst/repo/blobs/$d");
is($r->{status}, 404, 'before the mount: blob unknown in the target');
$r = $t->req('GET', '/v2/dst/repo/tags/list');
is($r->{status}, 404, 'before the mount: target repository unknown');
is(RegTest::error_code($r), 'NAME_UNKNOWN', 'before the mount: NAME_UNKNOWN');

$r = mount($t, 'dst/repo', "mount=$d&from=src/repo");
is($r->{status}, 201, 'mount: 201');
is($r->{headers}{location}, "/v2/dst/repo/blobs/$d", 'mount: location');
is($r->{headers}{'docker-content-digest'}, $d, 'mount: digest header');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'mount: api version');
ok(!defined $r->{headers}{'docker-upload-uuid'}, 'mount: no upload uuid');
is(RegTest::slurp(layer_link('dst/repo', $d)), $d, 'mount: layer link written');

$r = $t->req('GET', "/v2/dst/repo/blobs/$d");
is($r->{status}, 200, 'mounted blob readable');
ok($r->{content} eq $blob, 'mounted blob: same bytes');
is($r->{headers}{'docker-content-digest'}, $d, 'mounted blob: digest header');
$r = $t->req('HEAD', "/v2/dst/repo/blobs/$d");
is($r->{status}, 200, 'mounted blob: HEAD');
is($r->{headers}{'content-length'}, length $blob, 'mounted blob: HEAD length');

# the mount made dst/repo a repository (it has _layers, no _manifests)
$r = $t->req('GET', '/v2/dst/repo/tags/list');
is($r->{status}, 200, 'mounted-into repository: tags/list 200');
is_deeply(eval { decode_json($r->{content}) },
          { name => 'dst/repo', tags => [] },
          'mounted-into repository: no tags');
$r = $t->req('GET', '/v2/_catalog');
ok((grep { $_ eq 'dst/repo' }
    @{ (eval { decode_json($r->{content}) } || {})->{repositories} || [] }),
   'mounted-into repository in the catalog');

# again: already linked, still 201
$r = mount($t, 'dst/repo', "mount=$d&from=src/repo");
is($r->{status}, 201, 'mount again: 201');
is($r->{headers}{'docker-content-digest'}, $d, 'mount again: digest');

# the source name percent-encoded, as docker sends it
$r = mount($t, 'dst/enc', "mount=" . ($d =~ s/:/%3A/r) . "&from=src%2Frepo");
is($r->{status}, 201, 'mount with encoded digest and from: 201');
is(RegTest::slurp(layer_link('dst/enc', $d)), $d,
   'mount with encoded digest and from: link');

# ---- from a repository without the blob ----

$t->push_blob('other/repo', 'some other blob');

$r = mount($t, 'dst/two', "mount=$d&from=other/repo");
is_session($r, 'dst/two', 'from a repository without the blob');
is($r->{headers}{'oci-chunk-min-length'}, 1048576,
   'from a repository without the blob: OCI-Chunk-Min-Length');
is($r->{headers}{'range'}, '0-0', 'from a repository without the blob: range');
ok(!-e layer_link('dst/two', $d),
   'from a repository without the blob: no link');
is($t->req('GET', "/v2/dst/two/blobs/$d")->{status}, 404,
   'from a repository without the blob: blob unknown in the target');

# the session is a real one: upload the blob through it
my $loc = $r->{headers}{location};
$r = $t->req('PATCH', $loc, content => $blob,
             headers => { 'Content-Type' => 'application/octet-stream' });
is($r->{status}, 202, 'fallback session: PATCH');
is($r->{headers}{range}, '0-' . (length($blob) - 1), 'fallback session: range');
$r = $t->req('PUT', "$loc?digest=$d");
is($r->{status}, 201, 'fallback session: PUT');
is($r->{headers}{'docker-content-digest'}, $d, 'fallback session: digest');
ok($t->req('GET', "/v2/dst/two/blobs/$d")->{content} eq $blob,
   'fallback session: blob readable');

# from a repository that does not exist
$r = mount($t, 'dst/three', "mount=$d&from=no/such/repo");
is_session($r, 'dst/three', 'from an unknown repository');

# from a repository that has D only as a manifest, not as a layer
my $img = $t->push_image('man/repo', 'v1');
$r = mount($t, 'dst/four', "mount=$img->{digest}&from=man/repo");
is_session($r, 'dst/four', 'from a repository holding D as a manifest only');

# from a repository with a layer link whose bytes are gone
my $ghost = RegTest::digest('ghost bytes');
my $ghost_link = layer_link('ghost/repo', $ghost);
(my $ghost_dir = $ghost_link) =~ s{/link$}{};
make_path($ghost_dir);
RegTest::spew($ghost_link, $ghost);
$r = mount($t, 'dst/five', "mount=$ghost&from=ghost/repo");
is_session($r, 'dst/five', 'from a repository linking missing bytes');
ok(!-e layer_link('dst/five', $ghost), 'linking missing bytes: no link');

# a digest that exists nowhere
$r = mount($t, 'dst/six', "mount=$nowhere&from=src/repo");
is_session($r, 'dst/six', 'digest existing nowhere');
ok(!-e layer_link('dst/six', $nowhere), 'digest existing nowhere: no link');

# ---- invalid parameters ----

for my $bad ('sha256:abc', 'sha256:' . ('G' x 64), 'notadigest',
             'md5:' . ('0' x 32), 'sha256:' . uc(hex_of($d))) {
    $r = mount($t, 'dst/bad', "mount=$bad&from=src/repo");
    is($r->{status}, 400, "mount=$bad: 400");
    is(RegTest::error_code($r), 'DIGEST_INVALID', "mount=$bad: DIGEST_INVALID");
}

for my $bad ('Src/Repo', 'src//repo', '-src/repo', 'src/repo/', '_x') {
    $r = mount($t, 'dst/bad', "mount=$d&from=$bad");
    is($r->{status}, 400, "from=$bad: 400");
    is(RegTest::error_code($r), 'NAME_INVALID', "from=$bad: NAME_INVALID");
}

ok(!-e "$v2/repositories/dst/bad", 'invalid mounts created nothing');

# ---- no automatic mount by default: 201 or 202 would tell who has D ----

$r = mount($t, 'default/one', "mount=$d");
is_session($r, 'default/one', 'default, mount without from');
ok(!-e layer_link('default/one', $d), 'default, mount without from: no link');

# ---- automatic mount (no from), registry_auto_mount anonymous ----

my $auto = RegTest->new(root => $t->root,
                        location_extra => 'registry_auto_mount anonymous;');

$r = mount($auto, 'auto/one', "mount=$d");
is($r->{status}, 201, 'auto mount, blob in the store: 201');
is($r->{headers}{location}, "/v2/auto/one/blobs/$d", 'auto mount: location');
is($r->{headers}{'docker-content-digest'}, $d, 'auto mount: digest');
is(RegTest::slurp(layer_link('auto/one', $d)), $d, 'auto mount: link');
ok($auto->req('GET', "/v2/auto/one/blobs/$d")->{content} eq $blob,
   'auto mount: blob readable');

$r = mount($auto, 'auto/two', "mount=$nowhere");
is_session($r, 'auto/two', 'auto mount, blob nowhere');

$r = mount($auto, 'auto/three', "mount=$d",
           Authorization => 'Basic eHh4Onl5eQ==');
is_session($r, 'auto/three', 'auto mount with Authorization under anonymous');
ok(!-e layer_link('auto/three', $d),
   'auto mount with Authorization under anonymous: no link');

# an explicit from still mounts with an Authorization header
$r = mount($t, 'auto/four', "mount=$d&from=src/repo",
           Authorization => 'Basic eHh4Onl5eQ==');
is($r->{status}, 201, 'mount with from and Authorization: 201');

$r = mount($auto, 'auto/bad', 'mount=sha256:xyz');
is($r->{status}, 400, 'auto mount, invalid digest: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'auto mount, invalid digest: code');

# ---- sha512 ----

my $b512 = "a sha512 layer\n" x 300;
my $d512 = 'sha512:' . sha512_hex($b512);

$r = $t->req('POST', "/v2/src512/blobs/uploads/?digest=$d512", content => $b512);
is($r->{status}, 201, 'sha512 blob pushed');

$r = mount($t, 'dst512', "mount=$d512&from=src512");
is($r->{status}, 201, 'sha512 mount: 201');
is($r->{headers}{location}, "/v2/dst512/blobs/$d512", 'sha512 mount: location');
is($r->{headers}{'docker-content-digest'}, $d512, 'sha512 mount: digest');
is(RegTest::slurp(layer_link('dst512', $d512)), $d512, 'sha512 mount: link');
$r = $t->req('GET', "/v2/dst512/blobs/$d512");
is($r->{status}, 200, 'sha512 mounted blob readable');
ok($r->{content} eq $b512, 'sha512 mounted blob: same bytes');

$r = mount($auto, 'auto512', "mount=$d512");
is($r->{status}, 201, 'sha512 auto mount: 201');

$auto->stop();

$r = mount($t, 'dst512b', 'mount=sha512:' . sha512_hex('nowhere') . '&from=src512');
is_session($r, 'dst512b', 'sha512 digest existing nowhere');

$t->stop();

# ---- registry_auto_mount off / on, on the same store ----

my $off = RegTest->new(root => $t->root,
                       location_extra => 'registry_auto_mount off;');

$r = mount($off, 'off/one', "mount=$d");
is_session($r, 'off/one', 'auto mount off');
ok(!-e layer_link('off/one', $d), 'auto mount off: no link');

$r = mount($off, 'off/two', "mount=$d&from=src/repo");
is($r->{status}, 201, 'auto mount off: mount with from still 201');
is(RegTest::slurp(layer_link('off/two', $d)), $d,
   'auto mount off: mount with from links');

$off->stop();

my $on = RegTest->new(root => $t->root,
                      location_extra => 'registry_auto_mount on;');

$r = mount($on, 'on/one', "mount=$d", Authorization => 'Basic eHh4Onl5eQ==');
is($r->{status}, 201, 'auto mount on, with Authorization: 201');
is($r->{headers}{'docker-content-digest'}, $d, 'auto mount on: digest');
is(RegTest::slurp(layer_link('on/one', $d)), $d, 'auto mount on: link');

$r = mount($on, 'on/two', "mount=$d");
is($r->{status}, 201, 'auto mount on, anonymous: 201');

$r = mount($on, 'on/three', "mount=$nowhere",
           Authorization => 'Basic eHh4Onl5eQ==');
is_session($r, 'on/three', 'auto mount on, blob nowhere');

$on->stop();

my $anon = RegTest->new(root => $t->root,
                        location_extra => 'registry_auto_mount anonymous;');

$r = mount($anon, 'anon/one', "mount=$d");
is($r->{status}, 201, 'auto mount anonymous (explicit), no Authorization: 201');
$r = mount($anon, 'anon/two', "mount=$d", Authorization => 'Bearer abc');
is_session($r, 'anon/two', 'auto mount anonymous (explicit), Bearer');

$anon->stop();

done_testing();
