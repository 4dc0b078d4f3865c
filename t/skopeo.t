#!/usr/bin/perl

# A real client against the module: skopeo pushes a three-layer OCI image
# built locally with umoci (no network), pulls it back and every byte must
# survive; the same image as Docker schema 2; a multi-platform OCI index;
# inspect, list-tags, delete.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo skopeo_ok build_oci_image add_oci_index
                oci_manifest dir_image slurp sha256_file json_decode);

need_tools(qw(skopeo umoci));

my $OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
my $DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
my $ACCEPT = join(', ', $OCI_MANIFEST, $DOCKER_MANIFEST,
                  'application/vnd.oci.image.index.v1+json',
                  'application/vnd.docker.distribution.manifest.list.v2+json');

my $tmp = tempdir('skopeo-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $src = build_oci_image("$tmp/src", 'latest');
my @layers = map { $_->{digest} } @{ $src->{layers} };
my @blobs = ($src->{config}{digest}, @layers);

is(scalar @layers, 3, 'source image has three layers');

sub src_blob {
    my ($digest) = @_;
    my ($hex) = $digest =~ /^sha256:(.*)/;
    return slurp("$tmp/src/blobs/sha256/$hex");
}

my $t = RegTest->new(delete => 1);
my $reg = '127.0.0.1:' . $t->port;
my $v2 = $t->root . '/docker/registry/v2';

###############################################################################
# push the OCI image, no conversion

skopeo_ok('skopeo copy oci -> module (OCI manifest)',
          'copy', '--dest-tls-verify=false',
          "oci:$tmp/src:latest", "docker://$reg/test/img:v1");

for my $d (@blobs) {
    my ($hex) = $d =~ /^sha256:(.*)/;
    my $data = "$v2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data";
    ok(-f $data, "store has blob $d");
    is(-f $data ? sha256_file($data) : '', $d, "stored bytes hash to $d");
    is(-f "$v2/repositories/test/img/_layers/sha256/$hex/link"
       ? slurp("$v2/repositories/test/img/_layers/sha256/$hex/link") : '',
       $d, "test/img links $d");
}

{
    my ($hex) = $src->{digest} =~ /^sha256:(.*)/;
    my $tag = "$v2/repositories/test/img/_manifests/tags/v1/current/link";
    is(-f $tag ? slurp($tag) : '', $src->{digest}, 'tag link names the manifest');
    ok(-f "$v2/repositories/test/img/_manifests/revisions/sha256/$hex/link",
       'revision link exists');
}

my $r = $t->req('HEAD', '/v2/test/img/manifests/v1',
                headers => { Accept => $ACCEPT });
is($r->{status}, 200, 'HEAD manifest by tag');
is($r->{headers}{'docker-content-digest'}, $src->{digest},
   'registry reports the source manifest digest');

$r = $t->req('GET', '/v2/test/img/manifests/v1',
             headers => { Accept => $ACCEPT });
is($r->{status}, 200, 'GET manifest by tag');
ok($r->{content} eq $src->{bytes}, 'manifest bytes are exactly the pushed ones');
is($r->{headers}{'content-type'}, $OCI_MANIFEST,
   'OCI manifest without a mediaType field is served as OCI');

for my $d (@blobs) {
    $r = $t->req('GET', "/v2/test/img/blobs/$d");
    is($r->{status}, 200, "GET blob $d");
    ok($r->{content} eq src_blob($d), "blob $d bytes match the source");
}

###############################################################################
# pull it back into an OCI layout

skopeo_ok('skopeo copy module -> oci',
          'copy', '--src-tls-verify=false',
          "docker://$reg/test/img:v1", "oci:$tmp/out:v1");

my $out = oci_manifest("$tmp/out", 'v1');
is($out->{digest}, $src->{digest}, 'pulled manifest digest = source digest');
ok($out->{bytes} eq $src->{bytes}, 'pulled manifest bytes = source bytes');

for my $d (@blobs) {
    my ($hex) = $d =~ /^sha256:(.*)/;
    my $f = "$tmp/out/blobs/sha256/$hex";
    ok(-f $f, "pulled layout has $d");
    is(-f $f ? sha256_file($f) : '', $d, "pulled $d hashes right");
    ok(-f $f && slurp($f) eq src_blob($d), "pulled $d equals the source blob");
}

###############################################################################
# the same image converted to Docker schema 2 under a second tag

skopeo_ok('skopeo copy --format v2s2 oci -> module',
          'copy', '--dest-tls-verify=false', '--format', 'v2s2',
          "oci:$tmp/src:latest", "docker://$reg/test/img:v2s2");

$r = $t->req('GET', '/v2/test/img/manifests/v2s2',
             headers => { Accept => $ACCEPT });
is($r->{status}, 200, 'GET schema2 manifest by tag');
is($r->{headers}{'content-type'}, $DOCKER_MANIFEST,
   'schema2 manifest served with its media type');

my $s2_bytes = $r->{content};
my $s2_digest = RegTest::digest($s2_bytes);
is($r->{headers}{'docker-content-digest'}, $s2_digest,
   'Docker-Content-Digest is the hash of the served bytes');

my $s2 = json_decode($s2_bytes) || {};
is($s2->{mediaType}, $DOCKER_MANIFEST, 'manifest JSON is schema2');
is_deeply([map { $_->{digest} } @{ $s2->{layers} || [] }], \@layers,
          'schema2 manifest has the same layer blobs');
is($t->req('HEAD', "/v2/test/img/blobs/$s2->{config}{digest}")->{status}, 200,
   'schema2 config blob is in the repository')
    if $s2->{config};

skopeo_ok('skopeo copy module schema2 -> dir',
          'copy', '--src-tls-verify=false',
          "docker://$reg/test/img:v2s2", "dir:$tmp/dir2");

my $dir2 = dir_image("$tmp/dir2");
ok($dir2->{bytes} eq $s2_bytes, 'dir: manifest bytes = registry bytes');
is($dir2->{digest}, $s2_digest, 'dir: manifest digest = registry digest');

for my $desc ($s2->{config} || (), @{ $s2->{layers} || [] }) {
    my ($hex) = $desc->{digest} =~ /^sha256:(.*)/;
    my $f = "$tmp/dir2/$hex";
    is(-f $f ? sha256_file($f) : '', $desc->{digest},
       "dir: blob $desc->{digest} pulled intact");
    is(-s $f, $desc->{size}, "dir: blob $desc->{digest} has its size");
}

skopeo_ok('skopeo copy module schema2 -> oci (converted back)',
          'copy', '--src-tls-verify=false',
          "docker://$reg/test/img:v2s2", "oci:$tmp/out2:v2s2");
is_deeply([map { $_->{digest} } @{ oci_manifest("$tmp/out2", 'v2s2')->{layers} }],
          \@layers, 'converted back: same layers');

###############################################################################
# inspect, list-tags

my $json = skopeo_ok('skopeo inspect',
                     'inspect', '--tls-verify=false', "docker://$reg/test/img:v1");
my $info = json_decode($json) || {};
is($info->{Digest}, $src->{digest}, 'inspect: digest');
is_deeply($info->{Layers}, \@layers, 'inspect: layers');
is_deeply($info->{Env}, ['GREETING=hello'], 'inspect: config env');
is($info->{Labels}{'org.example.test'}, 'ngx-registry', 'inspect: config label');

my $raw = skopeo_ok('skopeo inspect --raw',
                    'inspect', '--raw', '--tls-verify=false',
                    "docker://$reg/test/img:v1");
ok($raw eq $src->{bytes}, 'inspect --raw: exact manifest bytes');

my $cfg = skopeo_ok('skopeo inspect --config --raw',
                    'inspect', '--config', '--raw', '--tls-verify=false',
                    "docker://$reg/test/img:v1");
ok($cfg eq src_blob($src->{config}{digest}), 'inspect --config: exact config bytes');

$json = skopeo_ok('skopeo list-tags',
                  'list-tags', '--tls-verify=false', "docker://$reg/test/img");
is_deeply((json_decode($json) || {})->{Tags}, ['v1', 'v2s2'], 'list-tags');

###############################################################################
# the same image into a second repository of the same registry: skopeo
# knows the blobs are on this registry and tries a cross-repository mount
# first; the registry must answer in a way skopeo recovers from.

skopeo_ok('skopeo copy oci -> module, second repository',
          'copy', '--dest-tls-verify=false',
          "oci:$tmp/src:latest", "docker://$reg/test/other:latest");

$r = $t->req('GET', '/v2/test/other/manifests/latest',
             headers => { Accept => $ACCEPT });
ok($r->{status} == 200 && $r->{content} eq $src->{bytes},
   'second repository serves the manifest');

for my $d (@blobs) {
    is($t->req('HEAD', "/v2/test/other/blobs/$d")->{status}, 200,
       "second repository has $d");
}

$r = $t->req('GET', '/v2/_catalog');
is_deeply((json_decode($r->{content}) || {})->{repositories},
          ['test/img', 'test/other'], 'catalog');

###############################################################################
# a multi-platform image: an OCI index over two manifests.  skopeo --all
# pushes the children by digest, then the index by tag.

{
    my $amd = build_oci_image("$tmp/multi", 'amd64', seed => 11);
    my $arm = build_oci_image("$tmp/multi", 'arm64', seed => 12, arch => 'arm64');
    my $idx = add_oci_index("$tmp/multi", 'multi',
                            ['amd64', 'amd64'], ['arm64', 'arm64']);

    skopeo_ok('skopeo copy --all: index and both manifests',
              'copy', '--all', '--dest-tls-verify=false',
              "oci:$tmp/multi:multi", "docker://$reg/test/multi:v1");

    $r = $t->req('GET', '/v2/test/multi/manifests/v1',
                 headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'index: GET by tag');
    is($r->{headers}{'content-type'}, 'application/vnd.oci.image.index.v1+json',
       'index: media type');
    ok($r->{content} eq $idx->{bytes}, 'index: exact bytes');
    is($r->{headers}{'docker-content-digest'}, $idx->{digest}, 'index: digest');

    for my $m ($amd, $arm) {
        $r = $t->req('GET', "/v2/test/multi/manifests/$m->{digest}",
                     headers => { Accept => $ACCEPT });
        ok($r->{status} == 200 && $r->{content} eq $m->{bytes},
           "index: child $m->{digest} by digest");
    }

    skopeo_ok('skopeo copy --all back into a layout',
              'copy', '--all', '--src-tls-verify=false',
              "docker://$reg/test/multi:v1", "oci:$tmp/mout:v1");

    my $mout = oci_manifest("$tmp/mout", 'v1');
    is($mout->{digest}, $idx->{digest}, 'pulled index digest');

    for my $m ($amd, $arm) {
        for my $d ($m->{digest}, $m->{config}{digest},
                   map { $_->{digest} } @{ $m->{layers} }) {
            my $f = "$tmp/mout/blobs/sha256/" . substr($d, 7);
            is(-f $f ? sha256_file($f) : '', $d, "pulled $d of the index");
        }
    }

    # without --all skopeo picks one platform: ask for arm64

    skopeo_ok('skopeo copy of one platform',
              'copy', '--src-tls-verify=false', '--override-arch', 'arm64',
              "docker://$reg/test/multi:v1", "dir:$tmp/one");
    is(dir_image("$tmp/one")->{digest}, $arm->{digest},
       'the arm64 manifest was chosen from the index');
}

###############################################################################
# delete: skopeo resolves the tag and deletes the manifest by digest

skopeo_ok('skopeo delete', 'delete', '--tls-verify=false',
          "docker://$reg/test/img:v1");

is($t->req('GET', '/v2/test/img/manifests/v1',
           headers => { Accept => $ACCEPT })->{status}, 404,
   'deleted tag: GET manifest 404');
is($t->req('GET', "/v2/test/img/manifests/$src->{digest}",
           headers => { Accept => $ACCEPT })->{status}, 404,
   'deleted digest: GET manifest 404');

$json = skopeo_ok('skopeo list-tags after delete',
                  'list-tags', '--tls-verify=false', "docker://$reg/test/img");
is_deeply((json_decode($json) || {})->{Tags}, ['v2s2'], 'only v2s2 left');

my ($rc, $msg) = skopeo('inspect', '--tls-verify=false',
                        "docker://$reg/test/img:v1");
isnt($rc, 0, 'skopeo inspect of the deleted tag fails');

is($t->req('GET', '/v2/test/other/manifests/latest',
           headers => { Accept => $ACCEPT })->{status}, 200,
   'the other repository is untouched');

skopeo_ok('schema2 tag still pulls after the delete',
          'copy', '--src-tls-verify=false',
          "docker://$reg/test/img:v2s2", "dir:$tmp/dir3");

###############################################################################
# a second server on the same store with registry_delete off refuses

my $ro = RegTest->new(delete => 0, root => $t->root);
($rc, $msg) = skopeo('delete', '--tls-verify=false',
                     "docker://127.0.0.1:" . $ro->port . "/test/other:latest");
isnt($rc, 0, 'skopeo delete fails with registry_delete off');
is($ro->req('GET', '/v2/test/other/manifests/latest',
            headers => { Accept => $ACCEPT })->{status}, 200,
   'manifest still there');

$ro->stop;
$t->stop;

done_testing();
