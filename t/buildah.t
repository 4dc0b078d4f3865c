#!/usr/bin/perl

# buildah against the module: an image built locally with buildah (from
# scratch, two layers, a config with env, labels, ports, working dir) is
# pushed with `buildah push` as it is, as OCI, as Docker schema 2 and with
# zstd-compressed layers, each into its own repository (a layer the
# registry already has in another repository is mounted from there, not
# sent again); every blob the registry stores is checked against what
# buildah built (config = image id, gzip layers decompress to the diff
# ids), and podman pulls each one into a separate, empty storage and must
# get the same image (podman checks the zstd layers' diff ids itself).
# Then a two-platform manifest list (`buildah manifest push --all`), and a
# second, fresh registry that must receive every blob again although the
# blob-info cache has seen them all.

use strict;
use warnings;

use Test::More;
use Digest::SHA ();
use File::Path qw(make_path);
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools slurp spew sha256_file json_decode);
use RegContainers qw(gunzip_digest uploads_in_log mounts_in_log log_since
                     processes_mentioning upload_sessions);

need_tools(qw(buildah podman));

# rootless buildah/podman would need user namespaces and /etc/subuid

plan(skip_all => 'buildah and podman run as root here') unless $> == 0;

my $OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
my $DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
my $DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
my $ACCEPT = join(', ', $OCI_MANIFEST, $DOCKER_MANIFEST, $OCI_INDEX,
                  $DOCKER_LIST);

my $tmp = tempdir('buildah-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $c = RegContainers->new($tmp);

# runs a tool as one assertion; returns stdout

sub ok_run {
    my ($name, $tool, $storage, @args) = @_;

    my ($rc, $out, $err) = $c->$tool($storage, @args);

    is($rc, 0, $name) or diag("$tool @args\n$out$err");

    return $out;
}

sub last_line {
    my ($text) = @_;
    my @l = grep { /\S/ } split /\n/, $text // '';
    return @l ? $l[-1] : '';
}

###############################################################################
# the files of the image

my %files;    # path in the image => bytes

{
    my $bin = '';
    my $h = 'buildah-seed';
    while (length($bin) < 256 * 1024) {
        $h = Digest::SHA::sha256($h);
        $bin .= $h;
    }

    %files = (
        '/etc/hello.txt'          => "hello from buildah\n",
        '/opt/data.bin'           => $bin,
        '/srv/tree/one.conf'      => "key = value\n",
        '/srv/tree/sub/two.txt'   => 'x' x 10000,
        '/srv/tree/sub/three.txt' => join("\n", 1 .. 2000),
    );

    for my $p (keys %files) {
        my $f = "$tmp/ctx$p";
        make_path($f =~ s{/[^/]+$}{}r);
        spew($f, $files{$p});
    }
}

###############################################################################
# build: layer one (hello.txt, data.bin) and a config, committed; then a
# container from it, layer two (a directory tree), committed again

my $ctr = last_line(ok_run('buildah from scratch', 'buildah', 'build',
                           'from', 'scratch'));

ok_run('buildah copy hello.txt', 'buildah', 'build', 'copy', $ctr,
       "$tmp/ctx/etc/hello.txt", '/etc/hello.txt');
ok_run('buildah copy data.bin', 'buildah', 'build', 'copy', $ctr,
       "$tmp/ctx/opt/data.bin", '/opt/data.bin');
ok_run('buildah config', 'buildah', 'build', 'config',
       '--env', 'GREETING=hello', '--label', 'org.example.test=ngx-registry',
       '--workingdir', '/srv', '--port', '8080/tcp', '--author', 'regtest',
       '--cmd', '/bin/cat /etc/hello.txt', '--os', 'linux',
       '--arch', 'amd64', $ctr);
ok_run('buildah commit base', 'buildah', 'build', 'commit', '-q', '--rm',
       $ctr, 'localhost/bh/base:v1');

$ctr = last_line(ok_run('buildah from the base image', 'buildah', 'build',
                        'from', '--pull=never', 'localhost/bh/base:v1'));
ok_run('buildah copy tree', 'buildah', 'build', 'copy', $ctr,
       "$tmp/ctx/srv/tree", '/srv/tree');
ok_run('buildah config, second layer', 'buildah', 'build', 'config',
       '--label', 'org.example.layer=two', '--env', 'SECOND=yes', $ctr);
my $image_id = 'sha256:' . last_line(
    ok_run('buildah commit image', 'buildah', 'build', 'commit', '-q',
           '--rm', $ctr, 'localhost/bh/img:v1'));

my $built = json_decode(ok_run('buildah inspect', 'buildah', 'build',
                               'inspect', '--type', 'image',
                               'localhost/bh/img:v1')) || {};
my @diff_ids = @{ $built->{OCIv1}{rootfs}{diff_ids} || [] };

like($image_id, qr/^sha256:[0-9a-f]{64}$/, "image id $image_id");
is("sha256:" . ($built->{FromImageID} // ''), $image_id,
   'inspect: same image id');
is(scalar @diff_ids, 2, 'the image has two layers');
is_deeply($built->{OCIv1}{config}{Env}, ['GREETING=hello', 'SECOND=yes'],
          'built config env');

###############################################################################
# push it four ways, each into its own repository.  (`--disable-compression`
# is not among them: containers/image compresses every layer it sends to a
# registry whatever buildah asks, so it would only repeat the gzip case.)

my $t = RegTest->new(delete => 1);
my $reg = '127.0.0.1:' . $t->port;
my $v2 = $t->root . '/docker/registry/v2';
my $access = $t->dir . '/access.log';

# The zstd push runs with a blob-info cache of its own.  With the shared
# one, containers/image (buildah 1.28 has no --force-compression) reuses a
# layer it knows in the registry whatever its compression: it would mount
# the gzip layers of the earlier pushes into bh/zstd and push a gzip image.

my @pushes = (
    # name, buildah push options, manifest type, layer media type,
    # environment
    ['default', [], $OCI_MANIFEST,
     'application/vnd.oci.image.layer.v1.tar+gzip', {}],
    ['oci', ['--format', 'oci'], $OCI_MANIFEST,
     'application/vnd.oci.image.layer.v1.tar+gzip', {}],
    ['v2s2', ['--format', 'v2s2'], $DOCKER_MANIFEST,
     'application/vnd.docker.image.rootfs.diff.tar.gzip', {}],
    ['zstd', ['--format', 'oci', '--compression-format', 'zstd'],
     $OCI_MANIFEST, 'application/vnd.oci.image.layer.v1.tar+zstd',
     { XDG_DATA_HOME => $c->home . '/data-zstd' }],
);

my %pushed;    # name => { digest, manifest (parsed), bytes }
my %stored;    # blob digest => first repository of this registry to hold it

# How the blobs of one push reached $repo, from the access log: a blob no
# repository of the registry held before is uploaded (a mount could not
# succeed); a layer another repository holds is mounted
# (?mount=D&from=<where the blob-info cache saw it>, answered 201) and not
# sent again; a config goes either way (containers/image looks only in the
# destination repository for a config, with HEAD, and never mounts one).

sub check_transfer {
    my ($name, $repo, $log, $config, @layers) = @_;

    my $up = uploads_in_log($log, $repo);
    my $mnt = mounts_in_log($log, $repo);
    my $ok = 1;

    for my $d ($config, @layers) {
        if (!$stored{$d}) {
            $ok &= ok($up->{$d} && !$mnt->{$d},
                      "$name: $d, new to the registry, uploaded");
        } elsif ($d eq $config) {
            $ok &= ok($up->{$d} || $mnt->{$d},
                      "$name: config $d uploaded or mounted");
        } else {
            $ok &= ok($mnt->{$d} && !$up->{$d},
                      "$name: $d (in $stored{$d}) mounted, not uploaded");
        }
    }

    diag("uploads: @{[ sort keys %$up ]}\nmounts: @{[ sort keys %$mnt ]}")
        unless $ok;

    $stored{$_} //= $repo for $config, @layers;
}

for my $p (@pushes) {
    my ($name, $opts, $type, $layer_type, $env) = @$p;
    my $repo = "bh/$name";

    my $offset = -s $access;

    {
        local @{ $c->env }{keys %$env} = values %$env;

        ok_run("buildah push ($name)", 'buildah', 'build', 'push', '-q',
               '--tls-verify=false', '--digestfile', "$tmp/digest-$name",
               @$opts, 'localhost/bh/img:v1', "docker://$reg/$repo:v1");
    }

    my $log = log_since($access, $offset);
    my $digestfile = -f "$tmp/digest-$name" ? slurp("$tmp/digest-$name") : '';

    my $r = $t->req('GET', "/v2/$repo/manifests/v1",
                    headers => { Accept => $ACCEPT });
    is($r->{status}, 200, "$name: GET manifest by tag");
    is($r->{headers}{'content-type'}, $type, "$name: manifest media type");

    my $digest = RegTest::digest($r->{content});
    is($r->{headers}{'docker-content-digest'}, $digest,
       "$name: Docker-Content-Digest is the hash of the bytes");
    is($digestfile, $digest, "$name: buildah's --digestfile names it");

    my $m = json_decode($r->{content}) || {};
    $pushed{$name} = { digest => $digest, manifest => $m,
                       bytes => $r->{content} };

    # the config: buildah's own bytes, whose hash is the image id

    is($m->{config}{digest}, $image_id, "$name: config digest = image id");

    $r = $t->req('GET', "/v2/$repo/blobs/$image_id");
    is(RegTest::digest($r->{content}), $image_id,
       "$name: config bytes hash to the image id");

    my $cfg = json_decode($r->{content}) || {};
    is_deeply($cfg->{rootfs}{diff_ids}, \@diff_ids, "$name: config diff ids");

    # the layers

    my @layers = @{ $m->{layers} || [] };
    is(scalar @layers, 2, "$name: two layers");

    for my $i (0 .. $#layers) {
        my $l = $layers[$i];
        my $d = $l->{digest};

        is($l->{mediaType}, $layer_type, "$name: layer $i media type");

        $r = $t->req('GET', "/v2/$repo/blobs/$d");
        is($r->{status}, 200, "$name: GET layer $i");
        is(RegTest::digest($r->{content}), $d, "$name: layer $i bytes hash right");
        is(length $r->{content}, $l->{size}, "$name: layer $i size");

        if ($name ne 'zstd') {
            is(gunzip_digest($r->{content}), $diff_ids[$i],
               "$name: layer $i gunzips to its diff id");
        }

        my ($hex) = $d =~ /^sha256:(.*)/;
        my $data = "$v2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data";
        is(-f $data ? sha256_file($data) : '', $d, "$name: store has layer $i");
        is(slurp("$v2/repositories/$repo/_layers/sha256/$hex/link"), $d,
           "$name: $repo links layer $i");
    }

    # none was assumed there: each was uploaded or mounted, the layers of
    # the earlier pushes mounted (the bytes $repo serves are checked above)

    check_transfer($name, $repo, $log, $image_id, map { $_->{digest} } @layers);

    like($log, qr{"PUT /v2/\Q$repo\E/manifests/v1 HTTP/1\.1" 201 },
         "$name: manifest PUT by tag");
}

# the compressions differ; the uncompressed layers do not

isnt($pushed{zstd}{manifest}{layers}[0]{digest},
     $pushed{default}{manifest}{layers}[0]{digest},
     'zstd and gzip layer blobs differ');

# same image under a second tag: the registry says it has every blob

{
    my $offset = -s $access;

    ok_run('buildah push, second tag', 'buildah', 'build', 'push', '-q',
           '--tls-verify=false', 'localhost/bh/img:v1',
           "docker://$reg/bh/default:latest");

    my $log = log_since($access, $offset);
    my $m = $pushed{default}{manifest};

    is_deeply(uploads_in_log($log, 'bh/default'), {},
              'second tag: nothing uploaded');

    # containers/image may try the repository where its blob-info cache saw
    # a layer last (bh/v2s2) before bh/default itself: the mount of a blob
    # bh/default already links answers 201 as well

    my $mnt = mounts_in_log($log, 'bh/default');

    for my $d ($image_id, map { $_->{digest} } @{ $m->{layers} }) {
        ok($mnt->{$d}
           || $log =~ m{"HEAD /v2/bh/default/blobs/\Q$d\E HTTP/1\.1" 200 },
           "second tag: $d found by HEAD or mounted");
        is(RegTest::digest($t->req('GET', "/v2/bh/default/blobs/$d")->{content}),
           $d, "second tag: bh/default serves $d");
    }

    my $r = $t->req('GET', '/v2/bh/default/tags/list');
    is_deeply((json_decode($r->{content}) || {})->{tags}, ['latest', 'v1'],
              'tags/list: latest, v1');

    $r = $t->req('HEAD', '/v2/bh/default/manifests/latest',
                 headers => { Accept => $ACCEPT });
    is($r->{headers}{'docker-content-digest'}, $pushed{default}{digest},
       'both tags name the same manifest');
}

my $r = $t->req('GET', '/v2/_catalog');
is_deeply((json_decode($r->{content}) || {})->{repositories},
          [map { "bh/$_->[0]" } sort { $a->[0] cmp $b->[0] } @pushes],
          'catalog lists the four repositories');

###############################################################################
# podman pulls each into an empty storage: the same image comes out

for my $p (@pushes) {
    my $name = $p->[0];
    my $ref = "$reg/bh/$name:v1";

    my $out = ok_run("podman pull ($name) into an empty storage", 'podman',
                     "pull-$name", 'pull', '-q', '--tls-verify=false', $ref);
    is('sha256:' . last_line($out), $image_id, "$name: pulled image id");

    my $info = (json_decode(ok_run("podman image inspect ($name)", 'podman',
                                   "pull-$name", 'image', 'inspect', $ref))
                || [])->[0] || {};

    is("sha256:" . ($info->{Id} // ''), $image_id, "$name: inspect Id");
    is($info->{Digest}, $pushed{$name}{digest}, "$name: inspect Digest");
    is_deeply($info->{RootFS}{Layers}, \@diff_ids, "$name: inspect layers");
    ok((grep { $_ eq "$reg/bh/$name\@$pushed{$name}{digest}" }
        @{ $info->{RepoDigests} || [] }), "$name: RepoDigests");
    is_deeply($info->{Config}{Env}, ['GREETING=hello', 'SECOND=yes'],
              "$name: config env");
    is($info->{Config}{Labels}{'org.example.test'}, 'ngx-registry',
       "$name: config label");
    is($info->{Config}{WorkingDir}, '/srv', "$name: config working dir");
    ok(exists $info->{Config}{ExposedPorts}{'8080/tcp'},
       "$name: config exposed port");
    is($info->{Author}, 'regtest', "$name: author");
}

# the files themselves, from the image podman pulled

{
    my $path = last_line(ok_run('podman image mount', 'podman', 'pull-default',
                                'image', 'mount', "$reg/bh/default:v1"));

    for my $f (sort keys %files) {
        my $got = -f "$path$f" ? slurp("$path$f") : undef;
        ok(defined $got && $got eq $files{$f}, "pulled image: $f intact");
    }

    ok_run('podman image unmount', 'podman', 'pull-default', 'image',
           'unmount', "$reg/bh/default:v1");
}

###############################################################################
# a manifest list: the amd64 image and an arm64 image of its own

my $arm_id;

{
    my $arm = last_line(ok_run('buildah from scratch (arm64)', 'buildah',
                               'build', 'from', 'scratch'));
    spew("$tmp/arm.txt", "arm64 content\n");
    ok_run('buildah copy (arm64)', 'buildah', 'build', 'copy', $arm,
           "$tmp/arm.txt", '/etc/arm.txt');
    ok_run('buildah config --arch arm64', 'buildah', 'build', 'config',
           '--arch', 'arm64', '--os', 'linux', $arm);
    $arm_id = 'sha256:' . last_line(
        ok_run('buildah commit (arm64)', 'buildah', 'build', 'commit', '-q',
               '--rm', $arm, 'localhost/bh/arm:v1'));

    ok_run('buildah manifest create', 'buildah', 'build', 'manifest',
           'create', 'localhost/bh/list:v1');

    for my $img ('localhost/bh/img:v1', 'localhost/bh/arm:v1') {
        ok_run("buildah manifest add $img", 'buildah', 'build', 'manifest',
               'add', 'localhost/bh/list:v1', "containers-storage:$img");
    }

    my $offset = -s $access;

    ok_run('buildah manifest push --all', 'buildah', 'build', 'manifest',
           'push', '-q', '--all', '--tls-verify=false', '--digestfile',
           "$tmp/digest-list", 'localhost/bh/list:v1',
           "docker://$reg/bh/list:v1");

    my $log = log_since($access, $offset);

    $r = $t->req('GET', '/v2/bh/list/manifests/v1',
                 headers => { Accept => $ACCEPT });
    is($r->{status}, 200, 'list: GET by tag');
    is($r->{headers}{'content-type'}, $OCI_INDEX, 'list: pushed as OCI index');

    my $digest = RegTest::digest($r->{content});
    is($r->{headers}{'docker-content-digest'}, $digest, 'list: digest header');
    is(-f "$tmp/digest-list" ? slurp("$tmp/digest-list") : '', $digest,
       'list: --digestfile names it');

    my $idx = json_decode($r->{content}) || {};
    my %by_arch = map { $_->{platform}{architecture} => $_ }
                  @{ $idx->{manifests} || [] };

    is_deeply([sort keys %by_arch], ['amd64', 'arm64'], 'list: two platforms');

    for my $arch (sort keys %by_arch) {
        my $desc = $by_arch{$arch};

        like($log, qr{"PUT /v2/bh/list/manifests/\Q$desc->{digest}\E HTTP/1\.1" 201 },
             "list: $arch manifest pushed by digest");

        $r = $t->req('GET', "/v2/bh/list/manifests/$desc->{digest}",
                     headers => { Accept => $ACCEPT });
        is($r->{status}, 200, "list: $arch manifest by digest");
        is($r->{headers}{'content-type'}, $desc->{mediaType},
           "list: $arch media type as in the index");
        is(length $r->{content}, $desc->{size}, "list: $arch size as in the index");

        my $m = json_decode($r->{content}) || {};
        is($m->{config}{digest}, $arch eq 'amd64' ? $image_id : $arm_id,
           "list: $arch config is that image's");

        for my $d ($m->{config}{digest}, map { $_->{digest} } @{ $m->{layers} }) {
            is(RegTest::digest($t->req('GET', "/v2/bh/list/blobs/$d")->{content}),
               $d, "list: $arch blob $d in bh/list");
        }

        # the amd64 layers are those of the pushes above: mounted; the
        # arm64 image is new: uploaded

        check_transfer("list: $arch", 'bh/list', $log, $m->{config}{digest},
                       map { $_->{digest} } @{ $m->{layers} });
    }

    for my $arch ('arm64', 'amd64') {
        my $out = ok_run("podman pull --arch $arch from the list", 'podman',
                         "pull-list-$arch", 'pull', '-q', '--tls-verify=false',
                         '--arch', $arch, "$reg/bh/list:v1");
        is('sha256:' . last_line($out), $arch eq 'amd64' ? $image_id : $arm_id,
           "list: podman picked the $arch image");
    }
}

###############################################################################
# a second registry, fresh store: the blob-info cache now knows every blob
# of this image on the first registry, yet every one must be uploaded

{
    ok(-s $c->blob_info_cache, 'the blob-info cache is the private one');

    my $t2 = RegTest->new();
    my $reg2 = '127.0.0.1:' . $t2->port;

    ok_run('buildah push to a second registry', 'buildah', 'build', 'push',
           '-q', '--tls-verify=false', 'localhost/bh/img:v1',
           "docker://$reg2/bh/default:v1");

    my $up = uploads_in_log(slurp($t2->dir . '/access.log'), 'bh/default');
    my $m = $pushed{default}{manifest};

    for my $d ($image_id, map { $_->{digest} } @{ $m->{layers} }) {
        ok($up->{$d}, "second registry: $d uploaded");
    }

    $r = $t2->req('GET', '/v2/bh/default/manifests/v1',
                  headers => { Accept => $ACCEPT });
    is(RegTest::digest($r->{content}), $pushed{default}{digest},
       'second registry: same manifest digest as the first');

    $t2->stop;
}

###############################################################################
# nothing left running

is(join("\n", processes_mentioning($tmp)), '',
   'no process left with the test directory in its command or environment');

# every upload session was completed or cancelled (a mount attempt answered
# 202 opens one)

is(join("\n", upload_sessions($t->root)), '', 'no upload session left behind');

$t->stop;

done_testing();
