#!/usr/bin/perl

# containerd against the module: a private containerd (own root, state,
# socket and config in the test's directory; content store, metadata and
# the native snapshotter only) pulls with `ctr images pull --plain-http` what
# skopeo pushed (a three-layer OCI image built with umoci, the same image as
# Docker schema 2, a two-platform OCI index); every byte in containerd's
# content store must be the source's, and the unpacked snapshot must hold
# the image's files.  Then `ctr images tag` + `ctr images push` into other
# repositories (containerd's own upload code: a cross-repository mount from
# the repository it pulled from, which the module grants, 201, so no blob
# is sent), an image imported from a tar and pushed (no source to mount
# from: plain POST + PUT), and skopeo pulls back what containerd pushed.

use strict;
use warnings;

use Test::More;
use Config;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use IO::Socket::UNIX;
use POSIX qw(WNOHANG);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo_ok build_oci_image add_oci_index
                oci_manifest slurp spew sha256_file json_decode run_cmd);
use RegContainers qw(run3 uploads_in_log mounts_in_log log_since
                     processes_mentioning upload_sessions);

need_tools(qw(containerd ctr skopeo umoci));

plan(skip_all => 'containerd needs root (mounts, chown of layer files)')
    unless $> == 0;

my $OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
my $DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
my $ACCEPT = join(', ', $OCI_MANIFEST, $DOCKER_MANIFEST, $OCI_INDEX,
                  'application/vnd.docker.distribution.manifest.list.v2+json');

my $tmp = tempdir('containerd-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

###############################################################################
# the images, pushed by skopeo

my $src = build_oci_image("$tmp/src", 'latest', seed => 3);
my $amd = build_oci_image("$tmp/multi", 'amd64', seed => 21);
my $arm = build_oci_image("$tmp/multi", 'arm64', seed => 22, arch => 'arm64');
my $idx = add_oci_index("$tmp/multi", 'multi',
                        ['amd64', 'amd64'], ['arm64', 'arm64']);

# the files build_oci_image puts in an image of seed $seed

sub image_files {
    my ($seed) = @_;

    my $bin = '';
    my $h = "seed-$seed";
    while (length($bin) < 256 * 1024) {
        $h = Digest::SHA::sha256($h);
        $bin .= $h;
    }

    return (
        '/etc/hello.txt'          => "hello from layer one ($seed)\n",
        '/opt/data.bin'           => $bin,
        '/srv/tree/one.conf'      => "key = value\n",
        '/srv/tree/sub/two.txt'   => 'x' x 10000,
        '/srv/tree/sub/three.txt' => join("\n", 1 .. 2000),
    );
}

sub blob_of {
    my ($layout, $digest) = @_;
    my ($hex) = $digest =~ /^sha256:([0-9a-f]{64})$/ or return undef;
    my $f = "$layout/blobs/sha256/$hex";
    return -f $f ? slurp($f) : undef;
}

# every digest an image (manifest or index) consists of, itself first;
# in list context with manifests => \%m, records which are manifests

sub digests_of {
    my ($layout, $m, $manifests) = @_;

    my @d = ($m->{digest});
    $manifests->{ $m->{digest} } = 1 if $manifests;

    if ($m->{manifests}) {
        for my $child (@{ $m->{manifests} }) {
            my $cm = json_decode(blob_of($layout, $child->{digest})) || {};
            $cm->{digest} = $child->{digest};
            push @d, digests_of($layout, $cm, $manifests);
        }
    } else {
        push @d, $m->{config}{digest}, map { $_->{digest} } @{ $m->{layers} };
    }

    return @d;
}

my $t = RegTest->new(delete => 1);
my $reg = '127.0.0.1:' . $t->port;
my $access = $t->dir . '/access.log';

skopeo_ok('skopeo push the OCI image', 'copy', '--dest-tls-verify=false',
          "oci:$tmp/src:latest", "docker://$reg/cd/img:v1");
skopeo_ok('skopeo push it as schema 2', 'copy', '--dest-tls-verify=false',
          '--format', 'v2s2', "oci:$tmp/src:latest", "docker://$reg/cd/img:v2s2");
skopeo_ok('skopeo push the index (--all)', 'copy', '--all',
          '--dest-tls-verify=false', "oci:$tmp/multi:multi",
          "docker://$reg/cd/multi:v1");

###############################################################################
# a private containerd

my $cdir = $tmp;

# unix socket paths are limited to 108 bytes

$cdir = tempdir('ctrd-XXXXXX', DIR => '/tmp', CLEANUP => 1)
    if length("$tmp/containerd.sock.ttrpc") > 100;

my $sock = "$cdir/containerd.sock";
my $ctrd_log = "$tmp/containerd.log";
my %env = (HOME => "$tmp", TMPDIR => "$tmp", XDG_RUNTIME_DIR => "$tmp",
           CONTAINERD_SNAPSHOTTER => 'native', CONTAINERD_NAMESPACE => 'regtest');

spew("$tmp/config.toml", <<"EOF");
version = 2
root = "$tmp/root"
state = "$tmp/state"
plugin_dir = ""
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/opt"
EOF

my $ctrd_pid;

sub stop_containerd {
    my $pid = $ctrd_pid or return 1;
    undef $ctrd_pid;

    kill 'TERM', $pid;

    for (1 .. 200) {
        return 1 if waitpid($pid, WNOHANG) == $pid;
        select undef, undef, undef, 0.05;
    }

    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);
    return 0;
}

END {
    local $?;
    stop_containerd();
}

sub ctr {
    my (@args) = @_;
    return run3(['ctr', '-a', $sock, @args], env => \%env);
}

# binary contents compared by length and digest, which a failure prints

sub is_bytes {
    my ($got, $want, $name) = @_;
    my $show = sub {
        defined $_[0] ? length($_[0]) . ' bytes ' . RegTest::digest($_[0])
                      : 'undef'
    };
    is($show->($got), $show->($want), $name);
}

sub ctr_ok {
    my ($name, @args) = @_;

    my ($rc, $out, $err) = ctr(@args);

    is($rc, 0, $name) or diag("ctr @args\n$out$err\n" . slurp($ctrd_log));

    return $out;
}

{
    $ctrd_pid = fork();
    die "fork: $!\n" unless defined $ctrd_pid;

    if ($ctrd_pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $ctrd_log;
        open STDERR, '>&', \*STDOUT;
        @ENV{keys %env} = values %env;

        # the test dies: containerd gets SIGTERM (PR_SET_PDEATHSIG)

        my $prctl = $Config{archname} =~ /^x86_64-linux/ ? 157
                  : $Config{archname} =~ /^aarch64-linux/ ? 167 : 0;
        syscall($prctl, 1, 15) if $prctl;

        exec('containerd', '--config', "$tmp/config.toml")
            or POSIX::_exit(127);
    }

    my ($up, $version) = (0, '');

    for (1 .. 200) {
        last if waitpid($ctrd_pid, WNOHANG) == $ctrd_pid;

        if (-S $sock) {
            my ($rc, $out) = ctr('version');

            if ($rc == 0) {
                ($up, $version) = (1, $out);
                last;
            }
        }

        select undef, undef, undef, 0.05;
    }

    unless (ok($up, "containerd answers ctr version on $sock within 10 s")) {
        my $log = slurp($ctrd_log);
        stop_containerd();
        BAIL_OUT("containerd did not start:\n$log");
    }

    # the answer comes from this containerd: its server part is there

    like($version, qr/^Server:\s*\n\s+Version:\s+\S+/m,
         'ctr version: the server reports its version');
}

my ($plugins) = (ctr('plugins', 'ls'))[1];
like($plugins, qr/io\.containerd\.snapshotter\.v1\s+native\s+\S+\s+ok/,
     'native snapshotter loaded');

###############################################################################
# pull the OCI image: content store = source bytes, snapshot = its files

{
    my $offset = -s $access;

    ctr_ok('ctr images pull (OCI)', 'images', 'pull', '--plain-http',
           '--snapshotter', 'native', "$reg/cd/img:v1");

    my $log = log_since($access, $offset);

    my $ls = ctr_ok('ctr images ls', 'images', 'ls');
    like($ls, qr/^\Q$reg\E\/cd\/img:v1\s+\Q$OCI_MANIFEST\E\s+\Q$src->{digest}\E\s/m,
         'ctr images ls: the source manifest digest');

    for my $d (digests_of("$tmp/src", $src)) {
        my ($rc, $bytes) = ctr('content', 'get', $d);
        is($rc, 0, "ctr content get $d");
        is_bytes($bytes, blob_of("$tmp/src", $d),
                 "content store: $d = source bytes");

        next if $d eq $src->{digest};

        like($log, qr{"GET /v2/cd/img/blobs/\Q$d\E HTTP/1\.1" 200 [^"]*"-" "containerd/},
             "containerd fetched $d from the module");
    }

    my $check = ctr_ok('ctr images check', 'images', 'check');
    like($check, qr/^\Q$reg\E\/cd\/img:v1\s.*complete \(4\/4\).*\strue\s*$/m,
         'ctr images check: complete (4/4), unpacked');

    # the snapshot of the top layer: chain id from the config's diff ids

    my $cfg = json_decode(blob_of("$tmp/src", $src->{config}{digest})) || {};
    my @diff = @{ $cfg->{rootfs}{diff_ids} || [] };
    my $chain = shift @diff;
    $chain = 'sha256:' . sha256_hex("$chain $_") for @diff;

    # a container holds its snapshot: containerd's collector would remove a
    # bare `ctr snapshots view`, which nothing leases, at any moment
    ctr_ok('ctr containers create: a read-only view of the top layer',
           'containers', 'create', '--read-only', "$reg/cd/img:v1",
           'regtest-view');
    like(ctr_ok('ctr snapshots info', 'snapshots', 'info', 'regtest-view'),
         qr/"Parent": "\Q$chain\E"/, 'the view is of the chain of the layers');
    my $mounts = ctr_ok('ctr snapshots mounts', 'snapshots', 'mounts',
                        '/mnt', 'regtest-view');
    my ($path) = $mounts =~ m{-t bind (\S+) /mnt};

    ok($path && -d $path, 'snapshot is a directory (native snapshotter)')
        or diag("ctr snapshots mounts: $mounts");

    my %files = image_files(3);

    for my $f (sort keys %files) {
        my $got = $path && -f "$path$f" ? slurp("$path$f") : undef;
        is_bytes($got, $files{$f}, "unpacked $f intact");
    }

    ctr_ok('ctr containers rm', 'containers', 'rm', 'regtest-view');
}

###############################################################################
# schema 2 and the index

{
    my $r = $t->req('GET', '/v2/cd/img/manifests/v2s2',
                    headers => { Accept => $ACCEPT });
    my $s2_digest = RegTest::digest($r->{content});
    my $s2 = json_decode($r->{content}) || {};

    ctr_ok('ctr images pull (schema 2)', 'images', 'pull', '--plain-http',
           "$reg/cd/img:v2s2");

    like(ctr_ok('ctr images ls', 'images', 'ls'),
         qr/^\Q$reg\E\/cd\/img:v2s2\s+\Q$DOCKER_MANIFEST\E\s+\Q$s2_digest\E\s/m,
         'schema 2: type and digest');

    my ($rc, $bytes) = ctr('content', 'get', $s2_digest);
    is($rc, 0, 'schema 2: ctr content get of the manifest');
    is($bytes, $r->{content}, 'schema 2: manifest bytes');

    ($rc, $bytes) = ctr('content', 'get', $s2->{config}{digest} // '');
    is($rc == 0 ? RegTest::digest($bytes) : '', $s2->{config}{digest},
       'schema 2: config');

    ctr_ok('ctr images pull --all-platforms (index)', 'images', 'pull',
           '--plain-http', '--all-platforms', "$reg/cd/multi:v1");

    like(ctr_ok('ctr images ls', 'images', 'ls'),
         qr/^\Q$reg\E\/cd\/multi:v1\s+\Q$OCI_INDEX\E\s+\Q$idx->{digest}\E\s.*linux\/amd64,linux\/arm64/m,
         'index: type, digest, both platforms');

    for my $d (digests_of("$tmp/multi", $idx)) {
        my ($rc, $bytes) = ctr('content', 'get', $d);
        is($rc, 0, "index: ctr content get $d");
        is_bytes($bytes, blob_of("$tmp/multi", $d),
                 "index: content $d = source bytes");
    }
}

###############################################################################
# tag + push into another repository: the same manifest, the same blobs

# $how: 'mounted' (every blob already in another repository of the
# registry: a mount answered 201, no upload) or 'uploaded' (an upload
# answered 201, no mount)

sub check_pushed {
    my ($name, $repo, $tag, $layout, $m, $log, $how) = @_;

    my $r = $t->req('GET', "/v2/$repo/manifests/$tag",
                    headers => { Accept => $ACCEPT });
    is($r->{status}, 200, "$name: GET $repo:$tag");
    is($r->{content}, $m->{bytes}, "$name: manifest bytes = source bytes");
    is($r->{headers}{'docker-content-digest'}, $m->{digest},
       "$name: manifest digest = source digest");

    my $up = uploads_in_log($log, $repo);
    my $mnt = mounts_in_log($log, $repo);
    my %manifests;

    for my $d (grep { $_ ne $m->{digest} }
               digests_of($layout, $m, \%manifests)) {

        if ($manifests{$d}) {
            $r = $t->req('GET', "/v2/$repo/manifests/$d",
                         headers => { Accept => $ACCEPT });
            is($r->{status}, 200, "$name: $repo serves child manifest $d");
            is($r->{content}, blob_of($layout, $d),
               "$name: child manifest $d, source bytes");
            like($log, qr{"PUT /v2/\Q$repo\E/manifests/\Q$d\E HTTP/1\.1" 201 },
                 "$name: child manifest $d pushed by digest");
            next;
        }

        $r = $t->req('GET', "/v2/$repo/blobs/$d");
        is($r->{status}, 200, "$name: $repo serves $d");
        is_bytes($r->{content}, blob_of($layout, $d),
                 "$name: $repo serves $d, source bytes");

        my @via = (($mnt->{$d} ? 'mount' : ()), ($up->{$d} ? 'upload' : ()));
        is("@via", $how eq 'mounted' ? 'mount' : 'upload',
           "$name: $d $how, and only so");
    }
}

{
    ctr_ok('ctr images tag', 'images', 'tag', "$reg/cd/img:v1",
           "$reg/cd/pushed:v1");

    my $offset = -s $access;

    ctr_ok('ctr images push', 'images', 'push', '--plain-http',
           "$reg/cd/pushed:v1");

    my $log = log_since($access, $offset);

    # containerd knows where the blobs came from (cd/img, or cd/multi for
    # a blob both images share) and asks for a mount first; the module
    # links the blob into cd/pushed (201), so nothing is uploaded

    check_pushed('push', 'cd/pushed', 'v1', "$tmp/src", $src, $log, 'mounted');

    like($log, qr{"POST /v2/cd/pushed/blobs/uploads/\?mount=sha256:[0-9a-f]{64}&from=cd/img HTTP/1\.1" 201 },
         'push: mounts from cd/img answered 201');
    unlike($log, qr{"POST /v2/cd/pushed/blobs/uploads/[^"]*" 202 },
           'push: no upload session opened');

    ctr_ok('ctr images tag (index)', 'images', 'tag', "$reg/cd/multi:v1",
           "$reg/cd/multi-copy:v1");

    $offset = -s $access;

    ctr_ok('ctr images push (index)', 'images', 'push', '--plain-http',
           "$reg/cd/multi-copy:v1");

    $log = log_since($access, $offset);

    check_pushed('push index', 'cd/multi-copy', 'v1', "$tmp/multi", $idx,
                 $log, 'mounted');

    like($log, qr{"POST /v2/cd/multi-copy/blobs/uploads/\?mount=sha256:[0-9a-f]{64}&from=cd/multi HTTP/1\.1" 201 },
         'push index: mounts from cd/multi answered 201');
    unlike($log, qr{"POST /v2/cd/multi-copy/blobs/uploads/[^"]*" 202 },
           'push index: no upload session opened');
}

###############################################################################
# an image containerd got from a tar, not a registry: no source labels, so
# no mount attempt, plain POST + PUT

{
    my $imp = build_oci_image("$tmp/imp", 'v5', seed => 5);

    my ($rc, $out) = run_cmd(['tar', '-C', "$tmp/imp", '-cf', "$tmp/imp.tar",
                              '.']);
    is($rc, 0, 'OCI layout as a tar') or diag($out);

    ctr_ok('ctr images import', 'images', 'import', '--no-unpack',
           '--base-name', "$reg/cd/imported", "$tmp/imp.tar");

    like(ctr_ok('ctr images ls', 'images', 'ls', '-q'),
         qr/^\Q$reg\E\/cd\/imported:v5$/m, 'imported image is named');

    my $offset = -s $access;

    ctr_ok('ctr images push (imported)', 'images', 'push', '--plain-http',
           "$reg/cd/imported:v5");

    my $log = log_since($access, $offset);

    check_pushed('imported', 'cd/imported', 'v5', "$tmp/imp", $imp, $log,
                 'uploaded');

    unlike($log, qr{mount=}, 'imported: no mount attempt');
    like($log, qr{"POST /v2/cd/imported/blobs/uploads/ HTTP/1\.1" 202 },
         'imported: upload sessions opened');

    # and an independent client reads back what containerd pushed

    skopeo_ok('skopeo pulls what ctr pushed', 'copy', '--src-tls-verify=false',
              "docker://$reg/cd/imported:v5", "oci:$tmp/back:v5");

    my $back = oci_manifest("$tmp/back", 'v5');
    is($back->{bytes}, $imp->{bytes}, 'skopeo: manifest bytes');

    for my $d (digests_of("$tmp/imp", $imp)) {
        is(sha256_file("$tmp/back/blobs/sha256/" . substr($d, 7)), $d,
           "skopeo: $d intact");
    }
}

###############################################################################
# tags and catalog as the module sees them

is_deeply((json_decode($t->req('GET', '/v2/cd/img/tags/list')->{content})
           || {})->{tags}, ['v1', 'v2s2'], 'cd/img tags');
is_deeply((json_decode($t->req('GET', '/v2/_catalog')->{content})
           || {})->{repositories},
          ['cd/img', 'cd/imported', 'cd/multi', 'cd/multi-copy', 'cd/pushed'],
          'catalog');

###############################################################################
# stop containerd: nothing left running, nothing left mounted

ok(stop_containerd(), 'containerd exited on SIGTERM');

is(join("\n", processes_mentioning($tmp)), '',
   'no process left with the test directory in its command or environment');

my $mountinfo = slurp('/proc/self/mountinfo');
unlike($mountinfo, qr/\Q$tmp\E/, 'nothing left mounted under the test directory');

# every upload session was completed or cancelled (a mount attempt answered
# 202 opens one)

is(join("\n", upload_sessions($t->root)), '', 'no upload session left behind');

$t->stop;

done_testing();
