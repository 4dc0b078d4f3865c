#!/usr/bin/perl

# Drop-in compatibility with CNCF distribution (registry:2) on one store:
# the module and `docker-registry serve` run side by side on the SAME
# directory.  What one writes, the other must serve, byte for byte, both
# ways; deletes made by one are seen by the other; distribution's garbage
# collector accepts a store the module wrote.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo skopeo_ok build_oci_image oci_manifest
                dir_image slurp sha256_file json_decode run_cmd
                start_distribution stop_distribution);

need_tools(qw(skopeo umoci docker-registry));

my $OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
my $DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
my $ACCEPT = join(', ', $OCI_MANIFEST, $DOCKER_MANIFEST,
                  'application/vnd.oci.image.index.v1+json',
                  'application/vnd.docker.distribution.manifest.list.v2+json');

my $tmp = tempdir('compat-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $t = RegTest->new(delete => 1);
my $dist = start_distribution($t->root);

my $mod = '127.0.0.1:' . $t->port;
my $dis = '127.0.0.1:' . $dist->{port};

my $http = HTTP::Tiny->new(max_redirect => 0, timeout => 30, keep_alive => 0);

sub dreq {
    my ($method, $path, %args) = @_;
    my %o;
    $o{headers} = $args{headers} if $args{headers};
    $o{content} = $args{content} if defined $args{content};
    return $http->request($method, "$dist->{url}$path", \%o);
}

sub src_blob {
    my ($layout, $digest) = @_;
    my ($hex) = $digest =~ /^sha256:(.*)/;
    return slurp("$layout/blobs/sha256/$hex");
}

# Pulling $ref from both servers gives the same manifest (bytes, digest,
# media type) and the same blobs, equal to the source layout's.

sub same_from_both {
    my ($name, $ref, $want, $layout, $what) = @_;

    my $m = $t->req('GET', "/v2/$name/manifests/$ref",
                    headers => { Accept => $ACCEPT });
    my $d = dreq('GET', "/v2/$name/manifests/$ref",
                 headers => { Accept => $ACCEPT });

    is($m->{status}, 200, "$what: module GET manifest $name:$ref");
    is($d->{status}, 200, "$what: distribution GET manifest $name:$ref");
    ok($m->{content} eq $want->{bytes}, "$what: module manifest bytes exact");
    ok($d->{content} eq $want->{bytes}, "$what: distribution manifest bytes exact");
    is($m->{headers}{'docker-content-digest'}, $want->{digest},
       "$what: module digest");
    is($d->{headers}{'docker-content-digest'}, $want->{digest},
       "$what: distribution digest");

    (my $dtype = $d->{headers}{'content-type'} // '') =~ s/;.*//;
    is($m->{headers}{'content-type'}, $dtype,
       "$what: same Content-Type from both ($dtype)");

    for my $desc ($want->{config}, @{ $want->{layers} }) {
        my $dg = $desc->{digest};
        my $mb = $t->req('GET', "/v2/$name/blobs/$dg");
        my $db = dreq('GET', "/v2/$name/blobs/$dg");
        my $bytes = src_blob($layout, $dg);

        ok($mb->{status} == 200 && $mb->{content} eq $bytes,
           "$what: module serves blob $dg");
        ok($db->{status} == 200 && $db->{content} eq $bytes,
           "$what: distribution serves blob $dg");
        is($mb->{headers}{'content-length'}, length $bytes,
           "$what: module Content-Length of $dg");
    }
}

sub tags_of {
    my ($r) = @_;
    return undef unless $r->{status} == 200;
    return (json_decode($r->{content}) || {})->{tags};
}

# distribution 2.8 lists tags in directory order: sort before comparing

sub dtags_of {
    my $tags = tags_of(@_);
    return $tags ? [sort @$tags] : $tags;
}

sub catalog_of {
    my ($r) = @_;
    return undef unless $r->{status} == 200;
    return (json_decode($r->{content}) || {})->{repositories};
}

ok(dreq('GET', '/v2/')->{status} == 200, 'distribution is up on the store');

my $imga = build_oci_image("$tmp/a", 'latest', seed => 1);
my $imgb = build_oci_image("$tmp/b", 'latest', seed => 2);

###############################################################################
# direction A: push to the module, pull from distribution

skopeo_ok('A: skopeo push to the module',
          'copy', '--dest-tls-verify=false',
          "oci:$tmp/a:latest", "docker://$mod/compat/a:v1");

skopeo_ok('A: skopeo pull from distribution',
          'copy', '--src-tls-verify=false',
          "docker://$dis/compat/a:v1", "oci:$tmp/a-out:v1");

my $aout = oci_manifest("$tmp/a-out", 'v1');
is($aout->{digest}, $imga->{digest}, 'A: pulled manifest digest');
ok($aout->{bytes} eq $imga->{bytes}, 'A: pulled manifest bytes');

for my $desc ($imga->{config}, @{ $imga->{layers} }) {
    my ($hex) = $desc->{digest} =~ /^sha256:(.*)/;
    ok(-f "$tmp/a-out/blobs/sha256/$hex"
       && slurp("$tmp/a-out/blobs/sha256/$hex") eq src_blob("$tmp/a", $desc->{digest}),
       "A: pulled blob $desc->{digest} equals the source");
}

same_from_both('compat/a', 'v1', $imga, "$tmp/a", 'A');
same_from_both('compat/a', $imga->{digest}, $imga, "$tmp/a", 'A by digest');

is_deeply(dtags_of(dreq('GET', '/v2/compat/a/tags/list')), ['v1'],
          'A: distribution tags/list');
is_deeply(catalog_of(dreq('GET', '/v2/_catalog')), ['compat/a'],
          'A: distribution catalog');

# schema2 as well

skopeo_ok('A: skopeo push schema2 to the module',
          'copy', '--dest-tls-verify=false', '--format', 'v2s2',
          "oci:$tmp/a:latest", "docker://$mod/compat/a:s2");
skopeo_ok('A: skopeo pull schema2 from distribution',
          'copy', '--src-tls-verify=false',
          "docker://$dis/compat/a:s2", "dir:$tmp/a-s2");

{
    my $pulled = dir_image("$tmp/a-s2");
    my $m = $t->req('GET', '/v2/compat/a/manifests/s2',
                    headers => { Accept => $ACCEPT });
    ok($pulled->{bytes} eq $m->{content},
       'A: schema2 manifest from distribution = module bytes');
    is($pulled->{mediaType}, $DOCKER_MANIFEST, 'A: it is schema2');
    is($m->{headers}{'content-type'}, $DOCKER_MANIFEST,
       'A: module serves it as schema2');
}

is_deeply(dtags_of(dreq('GET', '/v2/compat/a/tags/list')), ['s2', 'v1'],
          'A: distribution tags/list has both tags');

###############################################################################
# direction B: push to distribution, pull from the module

skopeo_ok('B: skopeo push to distribution',
          'copy', '--dest-tls-verify=false',
          "oci:$tmp/b:latest", "docker://$dis/compat/b:v1");
skopeo_ok('B: skopeo push schema2 to distribution',
          'copy', '--dest-tls-verify=false', '--format', 'v2s2',
          "oci:$tmp/b:latest", "docker://$dis/compat/b:s2");
skopeo_ok('B: skopeo push to distribution, nested name',
          'copy', '--dest-tls-verify=false',
          "oci:$tmp/b:latest", "docker://$dis/compat/deep/er/b:latest");

skopeo_ok('B: skopeo pull from the module',
          'copy', '--src-tls-verify=false',
          "docker://$mod/compat/b:v1", "oci:$tmp/b-out:v1");

my $bout = oci_manifest("$tmp/b-out", 'v1');
is($bout->{digest}, $imgb->{digest}, 'B: pulled manifest digest');
ok($bout->{bytes} eq $imgb->{bytes}, 'B: pulled manifest bytes');

for my $desc ($imgb->{config}, @{ $imgb->{layers} }) {
    my ($hex) = $desc->{digest} =~ /^sha256:(.*)/;
    ok(-f "$tmp/b-out/blobs/sha256/$hex"
       && slurp("$tmp/b-out/blobs/sha256/$hex") eq src_blob("$tmp/b", $desc->{digest}),
       "B: pulled blob $desc->{digest} equals the source");
}

same_from_both('compat/b', 'v1', $imgb, "$tmp/b", 'B');

{
    my $d = dreq('GET', '/v2/compat/b/manifests/s2',
                 headers => { Accept => $ACCEPT });
    my $m = $t->req('GET', '/v2/compat/b/manifests/s2',
                    headers => { Accept => $ACCEPT });
    is($m->{status}, 200, 'B: module GET schema2 manifest');
    ok($m->{content} eq $d->{content}, 'B: schema2 bytes equal distribution\'s');
    is($m->{headers}{'content-type'}, $DOCKER_MANIFEST, 'B: schema2 media type');
    is($m->{headers}{'docker-content-digest'},
       $d->{headers}{'docker-content-digest'}, 'B: schema2 digest');

    my $h = $t->req('HEAD', '/v2/compat/b/manifests/s2',
                    headers => { Accept => $ACCEPT });
    is($h->{status}, 200, 'B: module HEAD schema2 manifest');
    is($h->{headers}{'content-length'}, length $d->{content},
       'B: HEAD Content-Length');
}

skopeo_ok('B: skopeo pull schema2 from the module',
          'copy', '--src-tls-verify=false',
          "docker://$mod/compat/b:s2", "dir:$tmp/b-s2");

is_deeply(tags_of($t->req('GET', '/v2/compat/b/tags/list')), ['s2', 'v1'],
          'B: module tags/list');
is_deeply(catalog_of($t->req('GET', '/v2/_catalog')),
          ['compat/a', 'compat/b', 'compat/deep/er/b'], 'B: module catalog');
is_deeply(catalog_of(dreq('GET', '/v2/_catalog')),
          ['compat/a', 'compat/b', 'compat/deep/er/b'], 'B: distribution catalog agrees');

same_from_both('compat/deep/er/b', 'latest', $imgb, "$tmp/b", 'B nested');

{
    my $l = $imgb->{layers}[1]{digest};
    my $bytes = src_blob("$tmp/b", $l);
    my $r = $t->req('GET', "/v2/compat/b/blobs/$l",
                    headers => { Range => 'bytes=100-199' });
    is($r->{status}, 206, 'B: module range GET of a distribution blob');
    ok($r->{content} eq substr($bytes, 100, 100), 'B: range bytes');

    # compat/a never linked this layer

    is($t->req('GET', "/v2/compat/a/blobs/$l")->{status}, 404,
       'B: blob of another repository is 404 on the module');
    is(dreq('GET', "/v2/compat/a/blobs/$l")->{status}, 404,
       'B: ... and on distribution');
}

###############################################################################
# a chunked upload made by hand against the module, served by distribution

{
    my $blob = join('', map { chr(($_ * 7 + 3) % 256) } 1 .. 300_000);
    my $digest = RegTest::digest($blob);

    my $r = $t->req('POST', '/v2/compat/c/blobs/uploads/');
    is($r->{status}, 202, 'C: POST starts an upload');
    my $loc = $r->{headers}{location} // '';

    my @parts = (substr($blob, 0, 100_000), substr($blob, 100_000, 150_000),
                 substr($blob, 250_000));
    my $off = 0;

    for my $i (0, 1) {
        my $end = $off + length($parts[$i]) - 1;
        $r = $t->req('PATCH', $loc,
                     headers => { 'Content-Type' => 'application/octet-stream',
                                  'Content-Range' => "$off-$end" },
                     content => $parts[$i]);
        is($r->{status}, 202, "C: PATCH chunk $i");
        is($r->{headers}{range}, "0-$end", "C: Range after chunk $i");
        $loc = $r->{headers}{location} if $r->{headers}{location};
        $off = $end + 1;
    }

    my $sep = $loc =~ /\?/ ? '&' : '?';
    $r = $t->req('PUT', "$loc${sep}digest=$digest",
                 headers => { 'Content-Type' => 'application/octet-stream' },
                 content => $parts[2]);
    is($r->{status}, 201, 'C: PUT with the last chunk completes it');

    my $config = '{"architecture":"amd64","os":"linux","rootfs":'
        . '{"type":"layers","diff_ids":[]},"config":{}}';
    my $cd = $t->push_blob('compat/c', $config);

    my $manifest = '{"schemaVersion":2,"mediaType":"' . $OCI_MANIFEST . '",'
        . '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'
        . '"digest":"' . $cd . '","size":' . length($config) . '},'
        . '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar",'
        . '"digest":"' . $digest . '","size":' . length($blob) . '}]}';

    $r = $t->push_manifest('compat/c', 'chunked', $manifest, $OCI_MANIFEST);
    is($r->{status}, 201, 'C: manifest PUT');

    my $d = dreq('GET', "/v2/compat/c/blobs/$digest");
    is($d->{status}, 200, 'C: distribution serves the chunked blob');
    ok($d->{content} eq $blob, 'C: ... with the right bytes');
    is($d->{headers}{'docker-content-digest'}, $digest, 'C: ... and digest');

    $d = dreq('GET', '/v2/compat/c/manifests/chunked',
              headers => { Accept => $ACCEPT });
    is($d->{status}, 200, 'C: distribution serves the manifest by tag');
    ok($d->{content} eq $manifest, 'C: exact manifest bytes');
    is($d->{headers}{'docker-content-digest'}, RegTest::digest($manifest),
       'C: manifest digest');

    skopeo_ok('C: skopeo pulls it from distribution',
              'copy', '--src-tls-verify=false',
              "docker://$dis/compat/c:chunked", "dir:$tmp/c-out");
    is(sha256_file("$tmp/c-out/" . substr($digest, 7)), $digest,
       'C: pulled layer intact');

    # an upload left open on the module does not disturb distribution

    $r = $t->req('POST', '/v2/compat/c/blobs/uploads/');
    is($r->{status}, 202, 'C: an upload left in progress');
    is_deeply(dtags_of(dreq('GET', '/v2/compat/c/tags/list')), ['chunked'],
              'C: distribution tags/list with an open module upload');
}

###############################################################################
# deletes are seen by the other side

{
    # module deletes a manifest by digest: the tag goes for both

    my $r = $t->req('DELETE', "/v2/compat/a/manifests/$imga->{digest}");
    is($r->{status}, 202, 'D: module DELETE manifest by digest');
    is(dreq('GET', '/v2/compat/a/manifests/v1',
            headers => { Accept => $ACCEPT })->{status}, 404,
       'D: distribution no longer serves the deleted tag');
    is_deeply(dtags_of(dreq('GET', '/v2/compat/a/tags/list')), ['s2'],
              'D: distribution tags/list lost the tag');

    # distribution deletes a manifest by digest: gone from the module

    my $s2 = dreq('HEAD', '/v2/compat/b/manifests/s2',
                  headers => { Accept => $ACCEPT });
    my $s2d = $s2->{headers}{'docker-content-digest'};
    $r = dreq('DELETE', "/v2/compat/b/manifests/$s2d");
    is($r->{status}, 202, 'D: distribution DELETE manifest by digest');

    # links another program removes are seen once registry_link_cache's
    # validity (1 s by default) has passed
    select(undef, undef, undef, 1.1);
    is($t->req('GET', '/v2/compat/b/manifests/s2',
               headers => { Accept => $ACCEPT })->{status}, 404,
       'D: module no longer serves the tag distribution deleted');
    is($t->req('GET', "/v2/compat/b/manifests/$s2d",
               headers => { Accept => $ACCEPT })->{status}, 404,
       'D: nor the digest');
    is_deeply(tags_of($t->req('GET', '/v2/compat/b/tags/list')), ['v1'],
              'D: module tags/list');

    # module deletes a tag only

    $r = $t->req('DELETE', '/v2/compat/deep/er/b/manifests/latest');
    is($r->{status}, 202, 'D: module DELETE by tag');
    is(dreq('GET', '/v2/compat/deep/er/b/manifests/latest',
            headers => { Accept => $ACCEPT })->{status}, 404,
       'D: distribution: tag gone');
    is(dreq('GET', "/v2/compat/deep/er/b/manifests/$imgb->{digest}",
            headers => { Accept => $ACCEPT })->{status}, 200,
       'D: distribution: manifest still there by digest');
}

###############################################################################
# distribution's garbage collector on the shared store, registry stopped

# a blob no manifest references: distribution's GC removes its bytes and
# leaves the repository's link dangling, as it does in its own stores

my $orphan = "orphan blob, referenced by no manifest\n";
my $orphan_d = RegTest::digest($orphan);
is(eval { $t->push_blob('compat/c', $orphan) } // $@, $orphan_d,
   'G: orphan blob pushed');
my $orphan_data = $t->root . '/docker/registry/v2/blobs/sha256/'
    . substr($orphan_d, 7, 2) . '/' . substr($orphan_d, 7) . '/data';
ok(-f $orphan_data, 'G: orphan blob stored');

my $dist_pid = $dist->{pid};
stop_distribution($dist);
ok(!kill(0, $dist_pid), 'distribution stopped');

{
    my ($rc, $out) = run_cmd(['docker-registry', 'garbage-collect',
                              $dist->{config}], timeout => 60);
    is($rc, 0, 'G: docker-registry garbage-collect runs on the store')
        or diag($out);

    # compat/a:v1's manifest was deleted and its layers are referenced by
    # nothing else once the schema2 manifest's are counted: only check what
    # must survive.

    same_from_both_module_only('compat/b', 'v1', $imgb, "$tmp/b");
    same_from_both_module_only('compat/c', 'chunked', undef, undef);

    ok(!-e $orphan_data, 'G: GC removed the orphan blob\'s bytes');
    is($t->req('GET', "/v2/compat/c/blobs/$orphan_d")->{status}, 404,
       'G: module: blob whose bytes GC removed is 404 (dangling link)');
    is($t->req('HEAD', "/v2/compat/c/blobs/$orphan_d")->{status}, 404,
       'G: module: HEAD too');
    is(eval { $t->push_blob('compat/c', $orphan) } // $@, $orphan_d,
       'G: pushing it again works');
    my $r = $t->req('GET', "/v2/compat/c/blobs/$orphan_d");
    ok($r->{status} == 200 && $r->{content} eq $orphan,
       'G: and it is served again');

    skopeo_ok('G: skopeo pulls from the module after GC',
              'copy', '--src-tls-verify=false',
              "docker://$mod/compat/b:v1", "oci:$tmp/b-gc:v1");
    is(oci_manifest("$tmp/b-gc", 'v1')->{digest}, $imgb->{digest},
       'G: same image after GC');
}

sub same_from_both_module_only {
    my ($name, $ref, $want, $layout) = @_;

    my $m = $t->req('GET', "/v2/$name/manifests/$ref",
                    headers => { Accept => $ACCEPT });
    is($m->{status}, 200, "G: $name:$ref survives GC");
    return unless $want;
    ok($m->{content} eq $want->{bytes}, "G: $name:$ref bytes");

    for my $desc ($want->{config}, @{ $want->{layers} }) {
        my $r = $t->req('GET', "/v2/$name/blobs/$desc->{digest}");
        ok($r->{status} == 200
           && $r->{content} eq src_blob($layout, $desc->{digest}),
           "G: $name blob $desc->{digest} survives GC");
    }
}

$t->stop;

done_testing();
