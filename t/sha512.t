#!/usr/bin/perl

# sha512 blobs: upload sessions hashed with sha512 (POST
# ?digest-algorithm=sha512), PUT ?digest=sha512:..., monolithic pushes,
# storage under blobs/sha512/<2>/<hex>/data, GET/HEAD by sha512 digest, a
# session opened without digest-algorithm finished with a sha512 digest, an
# image whose config and layers are sha512 blobs, and a sha512 session
# resumed after a reload.
#
# Real clients: skopeo 1.9.3 (containers/image 5.23) has no option to
# choose the digest algorithm (`skopeo copy --help`: no digest-algorithm
# flag; only --digestfile, which names the manifest) and cannot push
# sha512 content: copying an OCI layout whose blobs are sha512 to a
# registry, also with --preserve-digests, fails with "Internal error
# writing blob sha512:..., blob with digest sha512:... saved with digest
# sha256:..." (and so does pulling a gzip sha512 layer, which it keeps
# as is, into oci: or dir:).  umoci 0.4.7 writes sha256 blobs only (no
# option either).  So no push round trip through a real client here; what
# skopeo can do with sha512 content (inspect, pull of uncompressed sha512
# layers, mount) is in t/sha512_clients.t.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex sha512_hex);
use File::Find;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $UUID = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

sub d512 { 'sha512:' . sha512_hex($_[0]) }
sub hex_of { (split /:/, $_[0])[1] }

sub blob_data {
    my ($t, $d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return $t->root . "/docker/registry/v2/blobs/$alg/"
        . substr($hex, 0, 2) . "/$hex/data";
}

sub files_under {
    my ($dir) = @_;
    my @f;
    find(sub { push @f, $File::Find::name if -f }, $dir) if -d $dir;
    return @f;
}

sub start {
    my ($t, $name, $query) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/"
                            . (defined $query ? "?$query" : ''));
    die "start upload: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    return $r->{headers}{location};
}

sub patch {
    my ($t, $loc, $data, $from) = @_;
    my $end = $from + length($data) - 1;
    return $t->req('PATCH', $loc, content => $data,
                   headers => { 'Content-Type' => 'application/octet-stream',
                                'Content-Range' => "$from-$end" });
}

my $t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

# ---- a wrong sha512 digest first, on an empty store ----

my $loc = start($t, 'lib/s512', 'digest-algorithm=sha512');
patch($t, $loc, 'some bytes', 0);
my $r = $t->req('PUT', "$loc?digest=" . d512('other bytes'));
is($r->{status}, 400, 'wrong sha512 digest: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'wrong sha512 digest: DIGEST_INVALID');
is(join(' ', files_under("$v2/blobs/sha512")), '',
   'wrong sha512 digest: nothing under blobs/sha512');
is($t->req('HEAD', '/v2/lib/s512/blobs/' . d512('some bytes'))->{status}, 404,
   'wrong sha512 digest: real digest unknown');
is($t->req('HEAD', '/v2/lib/s512/blobs/' . d512('other bytes'))->{status}, 404,
   'wrong sha512 digest: claimed digest unknown');

# same with the data in the PUT body of a session without digest-algorithm
$loc = start($t, 'lib/s512');
$r = $t->req('PUT', "$loc?digest=" . d512('other bytes'), content => 'some bytes');
is($r->{status}, 400, 'wrong sha512 digest, data in PUT: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID',
   'wrong sha512 digest, data in PUT: DIGEST_INVALID');
is(join(' ', files_under("$v2/blobs/sha512")), '',
   'wrong sha512 digest, data in PUT: nothing under blobs/sha512');

# ---- chunked upload hashed with sha512 ----

# chunk sizes that are not multiples of the 128-byte sha512 block
my $blob = join '', map { sha512_hex("sha512 blob $_") } 1 .. 3000;  # 384000
my $d = d512($blob);
my $hex = hex_of($d);
my @cuts = (0, 1, 130, 100_007, 250_000, length $blob);

$r = $t->req('POST', '/v2/lib/s512/blobs/uploads/?digest-algorithm=sha512');
is($r->{status}, 202, 'POST ?digest-algorithm=sha512: 202');
like($r->{headers}{location}, qr{^/v2/lib/s512/blobs/uploads/$UUID$},
     'POST ?digest-algorithm=sha512: location');
$loc = $r->{headers}{location};

my $ok = 1;
for my $i (0 .. $#cuts - 1) {
    my ($from, $to) = @cuts[$i, $i + 1];
    $r = patch($t, $loc, substr($blob, $from, $to - $from), $from);
    unless ($r->{status} == 202 && $r->{headers}{range} eq '0-' . ($to - 1)) {
        diag("PATCH $from-$to: $r->{status} $r->{content}");
        $ok = 0;
    }
}
ok($ok, 'sha512 session: five PATCH chunks');

$r = $t->req('PUT', "$loc?digest=$d");
is($r->{status}, 201, 'sha512 PUT: 201');
is($r->{headers}{'docker-content-digest'}, $d, 'sha512 PUT: Docker-Content-Digest');
is($r->{headers}{location}, "/v2/lib/s512/blobs/$d", 'sha512 PUT: location');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'sha512 PUT: api version');

my $file = blob_data($t, $d);
ok(-f $file, 'stored under blobs/sha512/<2>/<hex>/data');
ok(RegTest::slurp($file) eq $blob, 'stored bytes equal');
ok(!-e blob_data($t, RegTest::digest($blob)), 'not stored under blobs/sha256');
is(RegTest::slurp("$v2/repositories/lib/s512/_layers/sha512/$hex/link"), $d,
   'layer link under _layers/sha512');

$r = $t->req('GET', "/v2/lib/s512/blobs/$d");
is($r->{status}, 200, 'GET by sha512 digest');
ok($r->{content} eq $blob, 'GET by sha512 digest: bytes');
is($r->{headers}{'docker-content-digest'}, $d, 'GET by sha512 digest: digest header');
is($r->{headers}{etag}, qq{"$d"}, 'GET by sha512 digest: ETag');

$r = $t->req('HEAD', "/v2/lib/s512/blobs/$d");
is($r->{status}, 200, 'HEAD by sha512 digest');
is($r->{headers}{'content-length'}, length $blob, 'HEAD by sha512 digest: length');
is($r->{headers}{'docker-content-digest'}, $d, 'HEAD by sha512 digest: digest header');
is($r->{content}, '', 'HEAD by sha512 digest: no body');

$r = $t->req('GET', "/v2/lib/s512/blobs/$d", headers => { Range => 'bytes=128-255' });
is($r->{status}, 206, 'range GET by sha512 digest');
ok($r->{content} eq substr($blob, 128, 128), 'range GET by sha512 digest: bytes');

$r = $t->req('GET', '/v2/lib/s512/blobs/sha512:' . ('0' x 128));
is($r->{status}, 404, 'unknown sha512 digest: 404');
is(RegTest::error_code($r), 'BLOB_UNKNOWN', 'unknown sha512 digest: BLOB_UNKNOWN');

$r = $t->req('GET', '/v2/lib/s512/blobs/sha512:' . ('0' x 64));
is($r->{status}, 400, 'sha512 digest of 64 hex digits: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID',
   'sha512 digest of 64 hex digits: DIGEST_INVALID');

is($t->req('GET', "/v2/lib/other/blobs/$d")->{status}, 404,
   'sha512 blob not linked into another repository');

# ---- algorithms ----

$r = $t->req('POST', '/v2/lib/s512/blobs/uploads/?digest-algorithm=md5');
is($r->{status}, 400, '?digest-algorithm=md5: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID', '?digest-algorithm=md5: DIGEST_INVALID');

$r = $t->req('POST', '/v2/lib/s512/blobs/uploads/?digest-algorithm=sha256');
is($r->{status}, 202, '?digest-algorithm=sha256: 202');
$t->req('DELETE', $r->{headers}{location}) if $r->{status} == 202;

# a sha256 digest on a sha512 session holding data
my $small = 'sixteen bytes!!!';
$loc = start($t, 'lib/s512', 'digest-algorithm=sha512');
patch($t, $loc, $small, 0);
$r = $t->req('PUT', "$loc?digest=" . RegTest::digest($small));
is($r->{status}, 400, 'sha256 PUT digest on a sha512 session: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID',
   'sha256 PUT digest on a sha512 session: DIGEST_INVALID');
ok(!-e blob_data($t, RegTest::digest($small)),
   'sha256 PUT digest on a sha512 session: nothing published');
is($t->req('HEAD', '/v2/lib/s512/blobs/' . RegTest::digest($small))->{status}, 404,
   'sha256 PUT digest on a sha512 session: blob unknown');

# ---- monolithic ----

my $mono = "monolithic sha512 blob\n" x 1000;
my $md = d512($mono);
$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$md", content => $mono,
             headers => { 'Content-Type' => 'application/octet-stream' });
is($r->{status}, 201, 'monolithic POST ?digest=sha512: 201');
is($r->{headers}{'docker-content-digest'}, $md, 'monolithic sha512: digest header');
is($r->{headers}{location}, "/v2/lib/mono/blobs/$md", 'monolithic sha512: location');
ok(RegTest::slurp(blob_data($t, $md)) eq $mono, 'monolithic sha512: stored');
ok($t->req('GET', "/v2/lib/mono/blobs/$md")->{content} eq $mono,
   'monolithic sha512: readable');

$r = $t->req('POST', '/v2/lib/mono/blobs/uploads/?digest=' . d512('x'), content => 'y');
is($r->{status}, 400, 'monolithic sha512 mismatch: 400');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'monolithic sha512 mismatch: code');

# ---- session without digest-algorithm, closed with a sha512 digest ----

my $late = "all data in the PUT body\n" x 50;
my $ld = d512($late);
$loc = start($t, 'lib/late');
$r = $t->req('PUT', "$loc?digest=$ld", content => $late,
             headers => { 'Content-Type' => 'application/octet-stream' });
is($r->{status}, 201, 'plain session, sha512 digest, data in PUT: 201');
is($r->{headers}{'docker-content-digest'}, $ld,
   'plain session, sha512 digest, data in PUT: digest header');
ok(RegTest::slurp(blob_data($t, $ld)) eq $late,
   'plain session, sha512 digest, data in PUT: stored under sha512');
ok($t->req('GET', "/v2/lib/late/blobs/$ld")->{content} eq $late,
   'plain session, sha512 digest, data in PUT: readable');

# ---- session without digest-algorithm, chunks PATCHed, closed with a
# sha512 digest: the data is hashed again with sha512 ----

{
    # bigger than the 1 MiB buffer the data is read back in, cut anywhere
    my $b = join '', map { sha512_hex("plain session $_") } 1 .. 20_000;
    my $bd = d512($b);
    my @at = (0, 77, 1_048_600, length $b);

    my $ploc = start($t, 'lib/plain512');
    my $ok = 1;
    for my $i (0 .. $#at - 1) {
        $r = patch($t, $ploc, substr($b, $at[$i], $at[$i + 1] - $at[$i]), $at[$i]);
        $ok &&= $r->{status} == 202;
    }
    ok($ok, 'plain session, chunks PATCHed: 202 each');

    $r = $t->req('PUT', "$ploc?digest=$bd");
    is($r->{status}, 201, 'plain session, chunks PATCHed, sha512 PUT: 201')
        or diag($r->{content});
    is($r->{headers}{'docker-content-digest'}, $bd,
       'plain session, chunks PATCHed, sha512 PUT: Docker-Content-Digest');
    is($r->{headers}{location}, "/v2/lib/plain512/blobs/$bd",
       'plain session, chunks PATCHed, sha512 PUT: location');
    ok(RegTest::slurp(blob_data($t, $bd)) eq $b,
       'plain session, chunks PATCHed, sha512 PUT: stored under sha512');
    ok(!-e blob_data($t, RegTest::digest($b)),
       'plain session, chunks PATCHed, sha512 PUT: nothing under sha256');
    is(RegTest::slurp("$v2/repositories/lib/plain512/_layers/sha512/"
                      . hex_of($bd) . '/link'), $bd,
       'plain session, chunks PATCHed, sha512 PUT: layer link');
    $r = $t->req('GET', "/v2/lib/plain512/blobs/$bd");
    ok($r->{status} == 200 && $r->{content} eq $b,
       'plain session, chunks PATCHed, sha512 PUT: readable');
    is($r->{headers}{'docker-content-digest'}, $bd,
       'plain session, chunks PATCHed, sha512 PUT: GET digest header');
    is($t->req('GET', $ploc)->{status}, 404,
       'plain session, chunks PATCHed, sha512 PUT: session gone');

    # one PATCHed chunk, the last one in the PUT body
    my $small = 'a chunk PATCHed, then the rest in the PUT';
    my $sd = d512($small);
    $ploc = start($t, 'lib/plain512');
    patch($t, $ploc, substr($small, 0, 10), 0);
    $r = $t->req('PUT', "$ploc?digest=$sd", content => substr($small, 10),
                 headers => { 'Content-Type' => 'application/octet-stream',
                              'Content-Range' => '10-' . (length($small) - 1) });
    is($r->{status}, 201, 'plain session, PATCH then sha512 PUT with body: 201');
    is($r->{headers}{'docker-content-digest'}, $sd,
       'plain session, PATCH then sha512 PUT with body: digest header');
    ok($t->req('GET', "/v2/lib/plain512/blobs/$sd")->{content} eq $small,
       'plain session, PATCH then sha512 PUT with body: readable');

    # a wrong sha512 digest: nothing published
    my $wrong = d512('not these bytes');
    my $real = d512('these bytes, PATCHed');
    $ploc = start($t, 'lib/plain512');
    patch($t, $ploc, 'these bytes, PATCHed', 0);
    $r = $t->req('PUT', "$ploc?digest=$wrong");
    is($r->{status}, 400, 'plain session, chunk PATCHed, wrong sha512: 400');
    is(RegTest::error_code($r), 'DIGEST_INVALID',
       'plain session, chunk PATCHed, wrong sha512: DIGEST_INVALID');
    ok(!-e blob_data($t, $wrong) && !-e blob_data($t, $real)
       && !-e blob_data($t, RegTest::digest('these bytes, PATCHed')),
       'plain session, chunk PATCHed, wrong sha512: no blob data');
    ok(!-e "$v2/repositories/lib/plain512/_layers/sha512/" . hex_of($wrong)
       && !-e "$v2/repositories/lib/plain512/_layers/sha512/" . hex_of($real),
       'plain session, chunk PATCHed, wrong sha512: no layer link');
    is($t->req('HEAD', "/v2/lib/plain512/blobs/$wrong")->{status}, 404,
       'plain session, chunk PATCHed, wrong sha512: claimed digest unknown');
    is($t->req('HEAD', "/v2/lib/plain512/blobs/$real")->{status}, 404,
       'plain session, chunk PATCHed, wrong sha512: real digest unknown');
}

# ---- an image made of sha512 blobs ----

my $layer = join '', map { chr(($_ * 7) % 256) } 1 .. 50_000;
my $config = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers",'
           . '"diff_ids":["sha256:' . sha256_hex($layer) . '"]}}';
my ($cd, $ldg) = (d512($config), d512($layer));

for ([$config, $cd], [$layer, $ldg]) {
    my ($bytes, $dg) = @$_;
    $r = $t->req('POST', "/v2/lib/img512/blobs/uploads/?digest=$dg", content => $bytes);
    is($r->{status}, 201, 'image blob ' . substr(hex_of($dg), 0, 8) . ' pushed');
}

my $manifest = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => 'application/vnd.oci.image.manifest.v1+json',
    config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                digest => $cd, size => length $config },
    layers => [ { mediaType => 'application/vnd.oci.image.layer.v1.tar',
                  digest => $ldg, size => length $layer } ],
});
my $mdg = RegTest::digest($manifest);

$r = $t->push_manifest('lib/img512', 'v1', $manifest);
is($r->{status}, 201, 'manifest of sha512 blobs PUT by tag: 201')
    or diag($r->{content});
is($r->{headers}{'docker-content-digest'}, $mdg,
   'manifest of sha512 blobs: sha256 manifest digest');

$r = $t->req('GET', '/v2/lib/img512/manifests/v1',
             headers => { Accept => 'application/vnd.oci.image.manifest.v1+json' });
is($r->{status}, 200, 'manifest of sha512 blobs: GET by tag');
is($r->{content}, $manifest, 'manifest of sha512 blobs: bytes');
is($t->req('HEAD', "/v2/lib/img512/manifests/$mdg")->{status}, 200,
   'manifest of sha512 blobs: HEAD by digest');

for ([$config, $cd, 'config'], [$layer, $ldg, 'layer']) {
    my ($bytes, $dg, $what) = @$_;
    $r = $t->req('GET', "/v2/lib/img512/blobs/$dg");
    ok($r->{status} == 200 && $r->{content} eq $bytes, "sha512 $what pullable");
}

# a manifest referencing a sha512 blob that was never pushed
(my $missing = $manifest) =~ s/\Q$ldg\E/d512('not pushed')/e;
$r = $t->push_manifest('lib/img512', 'v2', $missing);
is($r->{status}, 400, 'manifest with an unknown sha512 layer: 400');
is(RegTest::error_code($r), 'MANIFEST_BLOB_UNKNOWN',
   'manifest with an unknown sha512 layer: MANIFEST_BLOB_UNKNOWN');

# the same manifest PUT by its sha512 digest
my $m512 = d512($manifest);
$r = $t->push_manifest('lib/img512', $m512, $manifest);
is($r->{status}, 201, 'manifest PUT by sha512 digest: 201');
is($r->{headers}{'docker-content-digest'}, $m512,
   'manifest PUT by sha512 digest: digest header');
is(RegTest::slurp("$v2/repositories/lib/img512/_manifests/revisions/sha512/"
                  . hex_of($m512) . '/link'), $m512,
   'manifest PUT by sha512 digest: revision link');
$r = $t->req('GET', "/v2/lib/img512/manifests/$m512");
is($r->{status}, 200, 'manifest GET by sha512 digest');
is($r->{content}, $manifest, 'manifest GET by sha512 digest: bytes');

# ---- a sha512 session resumed after a reload ----

my $big = join '', map { sha256_hex("resume $_") } 1 .. 20_000;   # 1280000
my $bd = d512($big);
my $half = 640_001;

$loc = start($t, 'lib/reload', 'digest-algorithm=sha512');
$r = patch($t, $loc, substr($big, 0, $half), 0);
is($r->{headers}{range}, '0-' . ($half - 1), 'before reload: first chunk');

my @old = $t->pids_of_workers;
my @new = $t->reload();
ok(@new && !(grep { my $n = $_; grep { $_ == $n } @old } @new),
   'reload replaced the workers');

$r = $t->req('GET', $loc);
is($r->{status}, 204, 'after reload: session known');
is($r->{headers}{range}, '0-' . ($half - 1), 'after reload: offset kept');

$r = patch($t, $loc, substr($big, $half), $half);
is($r->{status}, 202, 'after reload: second chunk');
$r = $t->req('PUT', "$loc?digest=$bd");
is($r->{status}, 201, 'after reload: sha512 digest right');
is($r->{headers}{'docker-content-digest'}, $bd, 'after reload: digest header');
ok($t->req('GET', "/v2/lib/reload/blobs/$bd")->{content} eq $big,
   'after reload: bytes');

$t->stop();

done_testing();
