#!/usr/bin/perl

# The Docker engine against the module: a private dockerd (t/lib/
# DockerEngine.pm) gets images written here as OCI layouts (no network)
# through skopeo, and pushes them with `docker push 127.0.0.1:PORT/...`
# (plain HTTP: Docker allows it for 127.0.0.0/8 by default).  The store
# must hold the manifest Docker reports and blobs with the right digests
# (the layers Docker compressed itself gunzip to the image's diff ids); a
# second tag finds every layer already there; a push to another repository
# mounts the layers; `docker pull` after `docker rmi`, by tag and by
# digest, gives back the same image (id, diff ids, config, file bytes out
# of a created container), for a one-layer and a three-layer image;
# `docker manifest inspect --insecure` reads the manifest; a tag and then
# the manifest deleted through the API make `docker pull` fail with the
# registry's "manifest unknown".  Credentials of `docker login` stay in
# the engine's own DOCKER_CONFIG (what the auth tests will build on).

use strict;
use warnings;

use Test::More;
use Digest::SHA ();
use File::Temp qw(tempdir);
use MIME::Base64 qw(decode_base64);
use Time::HiRes ();

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools slurp json_decode sha256_file);
use RegContainers qw(gunzip_digest uploads_in_log mounts_in_log log_since
                     processes_mentioning upload_sessions);
use DockerEngine qw(need_dockerd write_oci_image);

need_tools(qw(skopeo));
need_dockerd();

my $started = Time::HiRes::time();

my $DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
my $DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
my $DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
my $ACCEPT = join(', ', $DOCKER_MANIFEST,
                  'application/vnd.oci.image.manifest.v1+json',
                  'application/vnd.oci.image.index.v1+json',
                  'application/vnd.docker.distribution.manifest.list.v2+json');

my $tmp = tempdir('docker-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

# deterministic, incompressible bytes: a SHA-256 chain
sub chain {
    my ($seed, $size) = @_;
    my ($bytes, $h) = ('', "seed-$seed");
    while (length $bytes < $size) {
        $h = Digest::SHA::sha256($h);
        $bytes .= $h;
    }
    return substr($bytes, 0, $size);
}

###############################################################################
# two images, as OCI layouts: one layer; three layers, the last one
# replacing a file of the first (so that layer order shows in the files)

my %one_files = (
    '/etc/hello.txt' => "hello from docker.t\n",
    '/opt/data.bin'  => chain('one', 1024 * 1024),
);

my $one = write_oci_image("$tmp/one", 'v1',
    layers => [[
        ['etc/'], ['etc/hello.txt', $one_files{'/etc/hello.txt'}],
        ['opt/'], ['opt/data.bin', $one_files{'/opt/data.bin'}],
    ]],
    env => ['PATH=/usr/bin:/bin', 'GREETING=hello'],
    cmd => ['/bin/cat', '/etc/hello.txt'],
    labels => { 'org.example.test' => 'ngx-registry' },
    workdir => '/etc');

my %multi_files = (
    '/etc/hello.txt'        => "version 3 of hello\n",
    '/srv/a.txt'            => join("\n", 1 .. 3000),
    '/opt/big.bin'          => chain('multi', 2 * 1024 * 1024 + 17),
    '/srv/tree/sub/two.txt' => 'x' x 10000,
);

my $multi = write_oci_image("$tmp/multi", 'v1',
    layers => [
        [['etc/'], ['etc/hello.txt', "version 1 of hello\n"],
         ['srv/'], ['srv/a.txt', $multi_files{'/srv/a.txt'}]],
        [['opt/'], ['opt/big.bin', $multi_files{'/opt/big.bin'}]],
        [['etc/'], ['etc/hello.txt', $multi_files{'/etc/hello.txt'}],
         ['srv/'], ['srv/tree/'], ['srv/tree/sub/'],
         ['srv/tree/sub/two.txt', $multi_files{'/srv/tree/sub/two.txt'}]],
    ],
    cmd => ['/bin/sh']);

is(scalar @{ $multi->{layers} }, 3, 'the multi-layer image has three layers');

###############################################################################
# the registry and the engine

my $t = RegTest->new(delete => 1);
my $reg = '127.0.0.1:' . $t->port;
my $access = $t->dir . '/access.log';
my $v2 = $t->root . '/docker/registry/v2';

my $e = DockerEngine->new;
pass('dockerd answers on ' . $e->sock);

{
    my ($rc, $v) = $e->docker('version', '--format',
                              '{{.Client.Version}} / {{.Server.Version}}');
    note("docker client / engine: $v");

    my $info = $e->docker_ok('docker info', 'info');
    like($info, qr/^\s*Storage Driver: vfs$/m, 'docker info: vfs storage');
    like($info, qr/^\s*Docker Root Dir: \Q${\ $e->dir }\E\/data$/m,
         'docker info: the private data root');
    like($info, qr/^\s*Insecure Registries:\n(?:\s+\S+\n)*?\s+127\.0\.0\.0\/8$/m,
         'docker info: 127.0.0.0/8 is an insecure registry by default');
}

# docker pull/push output: "TAG: digest: sha256:... size: N"

sub pushed_digest {
    my ($out) = @_;
    return $out =~ /^\S+: digest: (sha256:[0-9a-f]{64}) size: (\d+)$/m
        ? ($1, $2) : ('', 0);
}

# the manifest as the registry serves it: [bytes, parsed, response]
sub manifest_of {
    my ($repo, $ref) = @_;
    my $r = $t->req('GET', "/v2/$repo/manifests/$ref",
                    headers => { Accept => $ACCEPT });
    return ($r->{content}, json_decode($r->{content}) || {}, $r);
}

# the file $path of image $ref, out of a container created from it (not
# started: `docker cp` reads its rootfs)
sub file_of {
    my ($ref, $path) = @_;

    my ($rc, $id) = $e->docker('create', '--network', 'none', $ref);
    chomp $id;
    return "create failed: $id" if $rc;

    my $dest = "$tmp/cp-" . substr($id, 0, 12) . ($path =~ s{/}{_}gr);
    ($rc, my $out, my $err) = $e->docker('cp', "$id:$path", $dest);
    $e->docker('rm', $id);

    return $rc ? "cp failed: $err" : slurp($dest);
}

###############################################################################
# load the one-layer image, tag it for the registry, push

my %img;   # what docker says of the loaded image

{
    my ($rc, $out) = $e->load_oci("$tmp/one", 'v1', 'regtest/one:v1');
    is($rc, 0, 'skopeo loads the OCI image into dockerd') or diag($out);

    my $i = $e->inspect('regtest/one:v1');
    is($i->{Id}, $one->{config_digest}, 'loaded: image id = config digest');
    is_deeply($i->{RootFS}{Layers}, [map { $_->{diff_id} } @{ $one->{layers} }],
              'loaded: diff ids');
    %img = %$i;

    $e->docker_ok('docker tag', 'tag', 'regtest/one:v1', "$reg/test/one:v1");
}

my ($digest, $size);   # of test/one:v1, as docker push reports it
my @layers;            # its layer digests

{
    my $offset = -s $access;

    my $out = $e->docker_ok('docker push test/one:v1', 'push',
                            "$reg/test/one:v1");
    my $log = log_since($access, $offset);

    ($digest, $size) = pushed_digest($out);
    like($digest, qr/^sha256:[0-9a-f]{64}$/, "docker push reports $digest");
    like($out, qr/: Pushed$/m, 'docker push: layer pushed');

    my ($bytes, $m, $r) = manifest_of('test/one', 'v1');
    is($r->{status}, 200, 'GET test/one:v1');
    is($r->{headers}{'content-type'}, $DOCKER_MANIFEST,
       'docker pushed a schema 2 manifest, served with its media type');
    is($r->{headers}{'docker-content-digest'}, $digest,
       'Docker-Content-Digest = the digest docker push reported');
    is(RegTest::digest($bytes), $digest, 'manifest bytes hash to it');
    is(length $bytes, $size, 'manifest size = the size docker push reported');

    is($m->{config}{mediaType}, $DOCKER_CONFIG, 'config media type');
    is($m->{config}{digest}, $img{Id}, 'config digest = image id');

    @layers = map { $_->{digest} } @{ $m->{layers} || [] };
    is(scalar @layers, 1, 'one layer');
    is($m->{layers}[0]{mediaType}, $DOCKER_LAYER, 'layer media type');

    # the store: blobs with the right bytes, links, tag, revision

    for my $d ($img{Id}, @layers) {
        my $f = $t->blob_path($d);
        is(-f $f ? sha256_file($f) : '', $d, "store: blob $d hashes right");
        is(RegTest::slurp($t->layer_link('test/one', $d)), $d,
           "store: test/one links $d");
    }

    is(RegTest::slurp($t->blob_path($img{Id})), $one->{config},
       'store: config bytes = the image config');
    is(gunzip_digest(RegTest::slurp($t->blob_path($layers[0]))),
       $one->{layers}[0]{diff_id},
       'store: the layer docker compressed gunzips to its diff id');
    is(-s $t->blob_path($layers[0]), $m->{layers}[0]{size},
       'store: layer size = manifest size');

    is(RegTest::slurp("$v2/repositories/test/one/_manifests/tags/v1/current/link"),
       $digest, 'store: tag v1 names the manifest');
    ok(-f "$v2/repositories/test/one/_manifests/revisions/sha256/"
       . substr($digest, 7) . '/link', 'store: revision link');

    my $up = uploads_in_log($log, 'test/one');
    ok($up->{$_}, "access log: $_ uploaded") for $img{Id}, @layers;
    like($log, qr{"PUT /v2/test/one/manifests/v1 HTTP/1\.1" 201 [^"]*"-" "docker/},
         'access log: docker PUT the manifest, 201');

    ok((grep { $_ eq "$reg/test/one\@$digest" }
        @{ $e->inspect("$reg/test/one:v1")->{RepoDigests} || [] }),
       'docker image inspect: RepoDigests names the pushed digest');
}

###############################################################################
# a second tag: every blob is already there

{
    $e->docker_ok('docker tag v2', 'tag', "$reg/test/one:v1",
                  "$reg/test/one:v2");

    my $offset = -s $access;
    my $out = $e->docker_ok('docker push test/one:v2', 'push',
                            "$reg/test/one:v2");
    my $log = log_since($access, $offset);

    like($out, qr/: Layer already exists$/m, 'push v2: layer already exists');
    unlike($out, qr/: Pushed$/m, 'push v2: nothing pushed');
    is((pushed_digest($out))[0], $digest, 'push v2: the same manifest digest');
    is_deeply(uploads_in_log($log, 'test/one'), {}, 'push v2: no blob uploaded');

    my $r = $t->req('GET', '/v2/test/one/tags/list');
    is_deeply((json_decode($r->{content}) || {})->{tags}, ['v1', 'v2'],
              'tags v1, v2');
    is((manifest_of('test/one', 'v2'))[2]{headers}{'docker-content-digest'},
       $digest, 'v2 names the same manifest');
}

###############################################################################
# another repository: docker knows the layer is in test/one and mounts it

{
    $e->docker_ok('docker tag test/copy', 'tag', "$reg/test/one:v1",
                  "$reg/test/copy:v1");

    my $offset = -s $access;
    my $out = $e->docker_ok('docker push test/copy:v1', 'push',
                            "$reg/test/copy:v1");
    my $log = log_since($access, $offset);

    like($out, qr/: Mounted from test\/one$/m, 'push test/copy: mounted from test/one');
    is((pushed_digest($out))[0], $digest, 'push test/copy: same digest');

    my $up = uploads_in_log($log, 'test/copy');
    my $mnt = mounts_in_log($log, 'test/copy');
    ok($mnt->{$_} && !$up->{$_}, "test/copy: $_ mounted, not uploaded")
        for @layers;

    for my $d ($img{Id}, @layers) {
        my $r = $t->req('GET', "/v2/test/copy/blobs/$d");
        is(RegTest::digest($r->{content}), $d, "test/copy serves $d");
    }
}

###############################################################################
# pull back into an emptied engine, by tag

sub check_pulled {
    my ($name, $ref, $want, $files) = @_;

    my $i = $e->inspect($ref);
    is($i->{Id}, $want->{Id}, "$name: same image id");
    is_deeply($i->{RootFS}{Layers}, $want->{RootFS}{Layers},
              "$name: same diff ids");
    is_deeply($i->{Config}, $want->{Config}, "$name: same config")
        if $want->{Config};

    for my $p (sort keys %$files) {
        ok(file_of($ref, $p) eq $files->{$p}, "$name: $p intact");
    }

    return $i;
}

{
    ok($e->remove_all, 'docker rmi: no image left');
    is($e->inspect("$reg/test/one:v1")->{Id}, undef, 'the image is gone');

    my $offset = -s $access;
    my $out = $e->docker_ok('docker pull test/one:v1', 'pull',
                            "$reg/test/one:v1");
    my $log = log_since($access, $offset);

    like($out, qr/^Digest: \Q$digest\E$/m, 'docker pull: the pushed digest');
    like($out, qr/^Status: Downloaded newer image/m, 'docker pull: downloaded');
    like($out, qr/^\Q${\ substr($layers[0], 7, 12)}\E: Pull complete$/m,
         'docker pull: the pushed layer');

    for my $d ($img{Id}, @layers) {
        like($log, qr{"GET /v2/test/one/blobs/\Q$d\E HTTP/1\.1" 200 [^"]*"-" "docker/},
             "docker fetched $d");
    }

    my $i = check_pulled('pulled by tag', "$reg/test/one:v1", \%img,
                         \%one_files);
    is_deeply($i->{RepoDigests}, ["$reg/test/one\@$digest"],
              'pulled by tag: RepoDigests');
    is($i->{Config}{Labels}{'org.example.test'}, 'ngx-registry',
       'pulled by tag: label');
}

###############################################################################
# by digest

{
    ok($e->remove_all, 'docker rmi: no image left');

    my $out = $e->docker_ok('docker pull test/one@digest', 'pull',
                            "$reg/test/one\@$digest");
    like($out, qr/^Digest: \Q$digest\E$/m, 'pull by digest: digest');

    check_pulled('pulled by digest', "$reg/test/one\@$digest", \%img,
                 { '/etc/hello.txt' => $one_files{'/etc/hello.txt'} });

    my $list = $e->docker_ok('docker images --digests', 'images', '--digests',
                             '--format', '{{.Repository}} {{.Tag}} {{.Digest}}');
    like($list, qr/^\Q$reg\E\/test\/one <none> \Q$digest\E$/m,
         'docker images: pulled by digest, untagged');
}

###############################################################################
# three layers

my ($mdigest, %mimg);

{
    my ($rc, $out) = $e->load_oci("$tmp/multi", 'v1', 'regtest/multi:v1');
    is($rc, 0, 'skopeo loads the three-layer image') or diag($out);

    %mimg = %{ $e->inspect('regtest/multi:v1') };
    is_deeply($mimg{RootFS}{Layers},
              [map { $_->{diff_id} } @{ $multi->{layers} }],
              'three-layer image loaded: diff ids');

    $e->docker_ok('docker tag multi', 'tag', 'regtest/multi:v1',
                  "$reg/test/multi:v1");
    $out = $e->docker_ok('docker push test/multi:v1', 'push',
                         "$reg/test/multi:v1");
    is(scalar(() = $out =~ /: Pushed$/mg), 3, 'push multi: three layers pushed');

    ($mdigest) = pushed_digest($out);

    my ($bytes, $m, $r) = manifest_of('test/multi', 'v1');
    is($r->{headers}{'docker-content-digest'}, $mdigest, 'multi: digest');
    is($m->{config}{digest}, $mimg{Id}, 'multi: config = image id');

    my @ml = @{ $m->{layers} || [] };
    is(scalar @ml, 3, 'multi: three layers in the manifest');

    for my $n (0 .. $#ml) {
        my $blob = $t->req('GET', "/v2/test/multi/blobs/$ml[$n]{digest}");
        is(RegTest::digest($blob->{content}), $ml[$n]{digest},
           "multi: layer $n bytes");
        is(gunzip_digest($blob->{content}), $multi->{layers}[$n]{diff_id},
           "multi: layer $n gunzips to diff id $n (order kept)");
    }

    ok($e->remove_all, 'docker rmi: no image left');

    $out = $e->docker_ok('docker pull test/multi:v1', 'pull',
                         "$reg/test/multi:v1");
    is(scalar(() = $out =~ /: Pull complete$/mg), 3,
       'pull multi: three layers');

    check_pulled('multi pulled', "$reg/test/multi:v1", \%mimg, \%multi_files);
}

###############################################################################
# docker manifest inspect: the CLI reads the registry itself

SKIP: {
    my ($rc) = $e->docker('manifest', 'inspect', '--help');
    skip('docker manifest is not available in this CLI', 4) if $rc;

    my ($bytes, $m) = manifest_of('test/multi', 'v1');

    my $out = $e->docker_ok('docker manifest inspect --insecure', 'manifest',
                            'inspect', '--insecure', "$reg/test/multi:v1");
    is_deeply(json_decode($out), $m, 'manifest inspect: the stored manifest');

    $out = $e->docker_ok('docker manifest inspect -v --insecure', 'manifest',
                         'inspect', '-v', '--insecure', "$reg/test/multi:v1");
    is((json_decode($out) || {})->{Descriptor}{digest}, $mdigest,
       'manifest inspect -v: descriptor digest');
}

###############################################################################
# the harness: `docker login` writes the engine's own DOCKER_CONFIG, never
# ~/.docker (the auth tests rely on it; this registry asks for nothing)

{
    my $home_cfg = ($ENV{HOME} // '/nonexistent') . '/.docker/config.json';
    my $before = -e $home_cfg ? slurp($home_cfg) : undef;

    my ($rc, $out, $err) = $e->login($reg, 'regtest', 'secret-pw');
    is($rc, 0, 'docker login (password on stdin)') or diag("$out$err");

    my $auth = $e->config->{auths}{$reg}{auth} // '';
    is(decode_base64($auth), 'regtest:secret-pw',
       'the credentials are in the engine\'s DOCKER_CONFIG');
    is(-e $home_cfg ? slurp($home_cfg) : undef, $before,
       '~/.docker/config.json untouched');

    ($rc, $out, $err) = $e->logout($reg);
    is($rc, 0, 'docker logout') or diag("$out$err");
    ok(!exists $e->config->{auths}{$reg}, 'logout removed them');
}

###############################################################################
# deletes through the API: docker pull fails with the registry's error

{
    ok($e->remove_all, 'docker rmi: no image left');

    my $r = $t->req('DELETE', '/v2/test/one/manifests/v2');
    is($r->{status}, 202, 'DELETE tag v2');

    my $msg = (json_decode($t->req('GET', '/v2/test/one/manifests/v2')->{content})
               || {})->{errors}[0]{message} // 'no message';

    my ($rc, $out, $err) = $e->docker('pull', "$reg/test/one:v2");
    isnt($rc, 0, 'docker pull of the deleted tag fails');
    like($err, qr/not found: manifest unknown: \Q$msg\E/,
         "docker pull: manifest unknown, the registry's message ($msg)");

    $e->docker_ok('docker pull test/one:v1 still works', 'pull',
                  "$reg/test/one:v1");
    is($e->inspect("$reg/test/one:v1")->{Id}, $img{Id}, 'v1: same image');

    ok($e->remove_all, 'docker rmi: no image left');

    $r = $t->req('DELETE', "/v2/test/one/manifests/$digest");
    is($r->{status}, 202, 'DELETE the manifest by digest');

    ($rc, $out, $err) = $e->docker('pull', "$reg/test/one:v1");
    isnt($rc, 0, 'docker pull of a tag of the deleted manifest fails');
    like($err, qr/manifest unknown/, 'docker pull: manifest unknown');

    ($rc, $out, $err) = $e->docker('pull', "$reg/test/one\@$digest");
    isnt($rc, 0, 'docker pull by the deleted digest fails');
    like($err, qr/manifest unknown/, 'docker pull by digest: manifest unknown');

    is($e->inspect("$reg/test/one:v1")->{Id}, undef, 'nothing was pulled');

    # the same manifest in test/copy is another repository's revision

    $e->docker_ok('docker pull test/copy:v1 still works', 'pull',
                  "$reg/test/copy:v1");
    check_pulled('test/copy pulled', "$reg/test/copy:v1", \%img,
                 { '/opt/data.bin' => $one_files{'/opt/data.bin'} });
}

###############################################################################
# stop the engine: nothing left running, mounted or on disk

{
    my $dir = $e->dir;
    my @pids = $e->pids;
    is(scalar @pids, 2, 'dockerd and containerd ran');

    ok($e->stop, 'dockerd and containerd exited on SIGTERM, no mount left');
    is(join(' ', grep { kill 0, $_ } @pids), '', 'their processes are gone');
    is(join("\n", processes_mentioning($dir)), '',
       'no process mentions the engine directory');
    is(join(' ', DockerEngine::mounts_under($dir)), '', 'nothing mounted there');
    ok(!-e $dir || $ENV{REGTEST_LEAVE}, 'engine directory removed');
}

is(join("\n", upload_sessions($t->root)), '', 'no upload session left behind');

$t->stop;

note(sprintf('docker.t ran %.1f s', Time::HiRes::time() - $started));

done_testing();
