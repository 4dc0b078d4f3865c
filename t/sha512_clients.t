#!/usr/bin/perl

# sha512-addressed content through a real client.  skopeo 1.9.3 cannot
# produce sha512 content (it writes every blob and manifest as sha256:
# copying a sha512 blob to any destination that must store it under its
# own digest fails with "Internal error writing blob sha512:..., saved with
# digest sha256:...", a sha512 config fails its sha256 check, and a
# docker://...@sha512: reference fails "Manifest does not match provided
# manifest digest"); umoci 0.4.7 knows sha256 only ("unsupported algorithm:
# sha512").  What skopeo does do with sha512, and what this file checks:
#
#   - inspect / inspect --raw, by tag and by @sha512: reference;
#   - pull an image whose layers are sha512-addressed (each verified
#     against its sha512 digest while downloading) into an OCI layout;
#   - copy registry to registry keeping the sha512 layer references: the
#     layers are reused (HEAD by sha512 digest on the destination) or
#     mounted from the source repository (POST ?mount=sha512:...&from=),
#     the manifest PUT by tag references them unchanged.
#
# The image is pushed over HTTP by the test: a sha256 config, two sha512
# layers, the manifest by its sha512 digest and by tag.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256 sha512_hex);
use File::Temp qw(tempdir);
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use JSON::PP;

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo_ok oci_manifest slurp sha256_file json_decode);

need_tools(qw(skopeo));

my $OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

my $tmp = tempdir('sha512-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $t = RegTest->new();
my $reg = '127.0.0.1:' . $t->port;
my $v2 = $t->root . '/docker/registry/v2';

sub d512 { 'sha512:' . sha512_hex($_[0]) }

sub blob_data {
    my ($d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return "$v2/blobs/$alg/" . substr($hex, 0, 2) . "/$hex/data";
}

sub layer_link {
    my ($repo, $d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return "$v2/repositories/$repo/_layers/$alg/$hex/link";
}

sub bytes_of {
    my ($n, $seed) = @_;
    my ($s, $h) = ('', $seed);
    while (length $s < $n) {
        $h = sha256($h);
        $s .= $h;
    }
    return substr($s, 0, $n);
}

sub push512 {
    my ($repo, $bytes) = @_;
    my $d = d512($bytes);
    my $r = $t->req('POST', "/v2/$repo/blobs/uploads/?digest=$d", content => $bytes);
    is($r->{status}, 201, "push sha512 blob to $repo");
    return $d;
}

###############################################################################
# the image

my $config = '{"architecture":"amd64","os":"linux",'
    . '"config":{"Env":["GREETING=sha512"]},'
    . '"rootfs":{"type":"layers","diff_ids":[]}}';
my @layers = (bytes_of(70000, 'layer one'), bytes_of(1234, 'layer two'));

my $cd = $t->push_blob('sha/src', $config);
my @ld = map { push512('sha/src', $_) } @layers;

my $manifest = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => $OCI_MANIFEST,
    config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                digest => $cd, size => length $config },
    layers => [ map { +{ mediaType => 'application/vnd.oci.image.layer.v1.tar',
                         digest => $ld[$_], size => length $layers[$_] } } 0, 1 ],
});
my $m512 = d512($manifest);
my $m256 = RegTest::digest($manifest);

my $r = $t->push_manifest('sha/src', $m512, $manifest);
is($r->{status}, 201, 'manifest PUT by its sha512 digest');
is($r->{headers}{'docker-content-digest'}, $m512,
   'manifest PUT by sha512: Docker-Content-Digest is the sha512 one');
ok(-f blob_data($m512), 'manifest stored under blobs/sha512');
ok(-f "$v2/repositories/sha/src/_manifests/revisions/sha512/"
   . substr($m512, 7) . '/link', 'manifest revision under revisions/sha512');

$r = $t->push_manifest('sha/src', 'v1', $manifest);
is($r->{status}, 201, 'manifest PUT by tag');

###############################################################################
# inspect

my $raw = skopeo_ok('skopeo inspect --raw by tag', 'inspect', '--raw',
                    '--tls-verify=false', "docker://$reg/sha/src:v1");
ok($raw eq $manifest, 'inspect --raw by tag: exact manifest bytes');

$raw = skopeo_ok('skopeo inspect --raw by @sha512', 'inspect', '--raw',
                 '--tls-verify=false', "docker://$reg/sha/src\@$m512");
ok($raw eq $manifest, 'inspect --raw by @sha512: exact manifest bytes');

my $info = json_decode(skopeo_ok('skopeo inspect', 'inspect',
                                 '--tls-verify=false',
                                 "docker://$reg/sha/src:v1")) || {};
is_deeply($info->{Layers}, \@ld, 'inspect: the two sha512 layers');
is_deeply($info->{Env}, ['GREETING=sha512'], 'inspect: the config was read');
is($info->{Digest}, $m256, 'inspect: skopeo names the manifest by sha256');

###############################################################################
# pull into an OCI layout: skopeo verifies each layer against its sha512
# digest while downloading, then (uncompressed layers, OCI destination)
# gzips them and names them by sha256

skopeo_ok('skopeo copy sha512 layers -> oci', 'copy', '--src-tls-verify=false',
          "docker://$reg/sha/src:v1", "oci:$tmp/out:v1");

{
    my $out = eval { oci_manifest("$tmp/out", 'v1') } || { layers => [] };
    is($out->{config}{digest}, $cd, 'pulled: same config digest');
    is(-f "$tmp/out/blobs/sha256/" . substr($cd, 7)
       ? slurp("$tmp/out/blobs/sha256/" . substr($cd, 7)) : '', $config,
       'pulled: config bytes');
    is(scalar @{ $out->{layers} }, 2, 'pulled: two layers');

    for my $i (0, 1) {
        my $d = $out->{layers}[$i]{digest} // '';
        my $f = "$tmp/out/blobs/" . join('/', split /:/, $d);
        is(-f $f ? sha256_file($f) : '', $d, "pulled layer $i hashes to its name");
        my $plain;
        gunzip($f => \$plain) or diag("gunzip: $GunzipError");
        ok(defined $plain && $plain eq $layers[$i],
           "pulled layer $i decompresses to the sha512 blob's bytes");
    }
}

###############################################################################
# registry to registry, the destination already holds the layers: skopeo
# finds them by their sha512 digest and uploads nothing but the manifest

{
    my $before = (-s ($t->dir . "/access.log")) // 0;

    push512('sha/dst1', $_) for @layers;

    skopeo_ok('skopeo copy to a repository that has the sha512 layers',
              'copy', '--src-tls-verify=false', '--dest-tls-verify=false',
              "docker://$reg/sha/src:v1", "docker://$reg/sha/dst1:v1");

    $r = $t->req('GET', '/v2/sha/dst1/manifests/v1',
                 headers => { Accept => $OCI_MANIFEST });
    is($r->{status}, 200, 'dst1: manifest by tag');
    ok($r->{content} eq $manifest,
       'dst1: the manifest is byte for byte the source (sha512 layers kept)');

    for my $i (0, 1) {
        ok(!-e blob_data(RegTest::digest($layers[$i])),
           "dst1: layer $i was not re-uploaded as sha256");
    }

    my $log = substr(RegTest::slurp($t->dir . "/access.log"), $before);
    like($log, qr{"HEAD /v2/sha/dst1/blobs/sha512:[0-9a-f]{128} HTTP/1\.1" 200 },
         'dst1: skopeo looked the layers up by sha512 digest');
}

###############################################################################
# registry to registry, the destination has nothing: after the pull above
# skopeo knows the layers live in sha/src on this registry and mounts them
# from there by their sha512 digest

{
    my $before = (-s ($t->dir . "/access.log")) // 0;

    skopeo_ok('skopeo copy to an empty repository (sha512 mount)',
              'copy', '--src-tls-verify=false', '--dest-tls-verify=false',
              "docker://$reg/sha/src:v1", "docker://$reg/sha/dst2:v1");

    $r = $t->req('GET', '/v2/sha/dst2/manifests/v1',
                 headers => { Accept => $OCI_MANIFEST });
    is($r->{status}, 200, 'dst2: manifest by tag');
    ok($r->{content} eq $manifest,
       'dst2: the manifest is byte for byte the source (sha512 layers kept)');

    for my $i (0, 1) {
        is(-f layer_link('sha/dst2', $ld[$i])
           ? slurp(layer_link('sha/dst2', $ld[$i])) : '', $ld[$i],
           "dst2: layer $i linked under _layers/sha512");
        $r = $t->req('GET', "/v2/sha/dst2/blobs/$ld[$i]");
        ok($r->{status} == 200 && $r->{content} eq $layers[$i],
           "dst2: layer $i served by its sha512 digest");
        is($r->{headers}{'docker-content-digest'}, $ld[$i],
           "dst2: layer $i Docker-Content-Digest");
    }

    my $log = substr(RegTest::slurp($t->dir . "/access.log"), $before);
    like($log, qr{"POST /v2/sha/dst2/blobs/uploads/\?\S*mount=sha512%3A[0-9a-f]{128}\S* HTTP/1\.1" 201 },
         'dst2: the layers were mounted by sha512 digest');
}

# and back out of the copy: the layers verify against sha512 again

skopeo_ok('skopeo copy dst2 -> oci', 'copy', '--src-tls-verify=false',
          "docker://$reg/sha/dst2:v1", "oci:$tmp/out2:v1");
{
    my $out = eval { oci_manifest("$tmp/out2", 'v1') } || { layers => [] };
    is(scalar @{ $out->{layers} }, 2, 'pulled from dst2: two layers');
    for my $i (0, 1) {
        my $d = $out->{layers}[$i]{digest} // '';
        my $plain;
        gunzip("$tmp/out2/blobs/" . join('/', split /:/, $d) => \$plain);
        ok(defined $plain && $plain eq $layers[$i],
           "pulled from dst2: layer $i bytes");
    }
}

$t->stop;

done_testing();
