#!/usr/bin/perl

# The pull-through cache with containerd (`ctr`) and the Docker engine
# (issue 17).  The upstream is a second nginx with this module holding two
# images skopeo pushed there from OCI layouts written here (no network);
# the mirror in front of it has the upstream as its Docker Hub with
# default=on, as conf-examples/mirror.conf has.  The clients are the
# private dockerd of t/lib/DockerEngine.pm, started with --registry-mirror
# pointing at the mirror, and `ctr` against the containerd it starts for
# that dockerd (its own namespace and the native snapshotter):
#   - ctr pulls docker.io/library/ctrimg with a hosts directory naming the
#     mirror (containerd's mirror form: `?ns=docker.io` on a plain name);
#     every byte of containerd's content store is the source's; pulled
#     again once its content is removed, the upstream's log still shows
#     each fetch once;
#   - docker pulls docker.io/library/dockimg: the engine asks the mirror
#     for plain names (`/v2/library/dockimg/...`, no prefix, no `ns=`),
#     the image's id, diff ids and a file out of a container are the
#     source's; with the image removed and the upstream stopped, a second
#     pull is served from the cache (the tag stale, past its TTL).
# Without a mirror the clients would ask Docker Hub, which a machine
# without network cannot reach: a pull that works came from the mirror.

use strict;
use warnings;

use Test::More;
use Digest::SHA ();
use File::Path qw(make_path);
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo_ok slurp spew json_decode);
use RegContainers qw(run3 log_since);
use DockerEngine qw(need_dockerd write_oci_image);
use MirrorTest;

need_tools(qw(skopeo ctr));
need_dockerd();

my $tmp = tempdir('mirror-clients-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

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

# an image of two layers, the second one of $size incompressible bytes
sub image {
    my ($name, $size) = @_;

    my %files = ('/etc/hello.txt' => "hello from $name\n",
                 '/opt/data.bin'  => chain($name, $size));

    my $img = write_oci_image("$tmp/$name", 'v1',
        layers => [[['etc/'], ['etc/hello.txt', $files{'/etc/hello.txt'}]],
                   [['opt/'], ['opt/data.bin', $files{'/opt/data.bin'}]]],
        cmd => ['/bin/cat', '/etc/hello.txt']);

    return { %$img, files => \%files,
             blobs => [$img->{config_digest},
                       map { $_->{digest} } @{ $img->{layers} }] };
}

sub is_bytes {
    my ($got, $want, $name) = @_;
    my $show = sub {
        defined $_[0] ? length($_[0]) . ' bytes ' . RegTest::digest($_[0])
                      : 'undef'
    };
    is($show->($got), $show->($want), $name);
}

###############################################################################
# the upstream, its images, and the mirror

my $ctrimg = image('ctrimg', 1024 * 1024);
my $dockimg = image('dockimg', 2 * 1024 * 1024 + 17);

my $up = RegTest->new();
my $upreg = '127.0.0.1:' . $up->port;

for my $name ('ctrimg', 'dockimg') {
    skopeo_ok("skopeo pushes $name to the upstream", 'copy',
              '--dest-tls-verify=false', "oci:$tmp/$name:v1",
              "docker://$upreg/library/$name:v1");
}

my $m = MirrorTest::mirror("http://$upreg", ttl => '1s',
    upstream => "registry_upstream docker.io http://$upreg prefix=docker.io/"
                . ' library=on default=on;',
    opts => { http_extra => "log_format cache '\$request \$registry_cache';" },
    location_extra => "access_log cache.log cache;\naccess_log access.log;\n");
my $mirror = 'http://127.0.0.1:' . $m->port;
my $mlog = $m->dir . '/access.log';

# upstream GETs of an image's manifest and blobs, as its access log shows
sub fetches {
    my ($name, $img) = @_;
    return [map { MirrorTest::upstream_hits($up,
                      qr{"GET /v2/library/$name/(?:blobs|manifests)/\Q$_\E })
                } 'v1', @{ $img->{blobs} }];
}

my $e = DockerEngine->new(dockerd_args => ['--registry-mirror', $mirror]);
pass('dockerd answers on ' . $e->sock);

###############################################################################
# containerd's mirror form: a hosts directory, ?ns=docker.io

{
    make_path("$tmp/hosts/docker.io");
    spew("$tmp/hosts/docker.io/hosts.toml", <<"EOF");
server = "https://registry-1.docker.io"

[host."$mirror"]
  capabilities = ["pull", "resolve"]
EOF

    my %env = (HOME => "$tmp", TMPDIR => "$tmp",
               CONTAINERD_NAMESPACE => 'regtest');

    my $ctr = sub {
        return run3(['ctr', '-a', $e->containerd_sock, @_], env => \%env);
    };

    my $pull = sub {
        my ($name) = @_;
        my ($rc, $out, $err) = $ctr->('images', 'pull', '--hosts-dir',
                                      "$tmp/hosts", '--snapshotter', 'native',
                                      'docker.io/library/ctrimg:v1');
        is($rc, 0, $name) or diag("$out$err\n" . $e->logs);
    };

    my $offset = -s $mlog;
    $pull->('ctr pulls docker.io/library/ctrimg:v1 through the mirror');
    my $log = log_since($mlog, $offset);

    like($log, qr{"(?:HEAD|GET) /v2/library/ctrimg/manifests/v1\?ns=docker\.io HTTP/1\.1" 200 [^"]*"-" "containerd/},
         'containerd asked the mirror for the tag with ?ns=docker.io');
    unlike($log, qr{"(?:HEAD|GET) /v2/library/ctrimg/[^"?]* HTTP},
           '... and everything else too');

    my (undef, $ls) = $ctr->('images', 'ls');
    like($ls, qr{^docker\.io/library/ctrimg:v1\s+\S+\s+\Q$ctrimg->{digest}\E\s}m,
         'ctr images ls: the source manifest digest');

    for my $d ($ctrimg->{digest}, @{ $ctrimg->{blobs} }) {
        my ($rc, $bytes) = $ctr->('content', 'get', $d);
        is_bytes($rc == 0 ? $bytes : undef,
                 slurp("$tmp/ctrimg/blobs/sha256/" . substr($d, 7)),
                 "content store: $d = the source's bytes");
    }

    is_deeply(fetches('ctrimg', $ctrimg), [(1) x 4],
              'the upstream served the manifest and each blob once');

    # again, with nothing of it left in containerd: all from the cache

    $ctr->('images', 'rm', '--sync', 'docker.io/library/ctrimg:v1');
    $ctr->('content', 'rm', $ctrimg->{digest}, @{ $ctrimg->{blobs} });
    my ($rc) = $ctr->('content', 'get', $ctrimg->{layers}[1]{digest});
    isnt($rc, 0, 'containerd has the image no more');

    $pull->('ctr pulls it again');
    ($rc, my $bytes) = $ctr->('content', 'get', $ctrimg->{layers}[1]{digest});
    is_bytes($rc == 0 ? $bytes : undef, $ctrimg->{layers}[1]{gz},
             'the big layer, again');
    is_deeply(fetches('ctrimg', $ctrimg), [(1) x 4],
              'still one upstream GET of each');
}

###############################################################################
# the Docker engine's registry-mirrors: plain names

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

sub docker_pulled {
    my ($name) = @_;

    my $out = $e->docker_ok("$name: docker pull docker.io/library/dockimg:v1",
                            'pull', 'docker.io/library/dockimg:v1');
    like($out, qr/^Digest: \Q$dockimg->{digest}\E$/m, "$name: the digest");

    my $i = $e->inspect('docker.io/library/dockimg:v1');
    is($i->{Id}, $dockimg->{config_digest}, "$name: image id = config digest");
    is_deeply($i->{RootFS}{Layers},
              [map { $_->{diff_id} } @{ $dockimg->{layers} }],
              "$name: the diff ids");

    for my $p (sort keys %{ $dockimg->{files} }) {
        ok(file_of('docker.io/library/dockimg:v1', $p)
           eq $dockimg->{files}{$p}, "$name: $p intact");
    }
}

{
    my $offset = -s $mlog;
    docker_pulled('docker');
    my $log = log_since($mlog, $offset);

    like($log, qr{"(?:HEAD|GET) /v2/library/dockimg/manifests/v1 HTTP/1\.1" 200 [^"]*"-" "docker/},
         'docker asked the mirror for the plain name');
    unlike($log, qr{ns=}, '... without ?ns=');

    for my $d (@{ $dockimg->{blobs} }) {
        like($log, qr{"GET /v2/library/dockimg/blobs/\Q$d\E HTTP/1\.1" 200 },
             "docker fetched $d from the mirror");
    }

    is_deeply(fetches('dockimg', $dockimg), [(1) x 4],
              'the upstream served the manifest and each blob once');
    ok(-f $m->blob_path($dockimg->{layers}[1]{digest}),
       'the big layer is in the mirror\'s store');

    # the upstream gone: the cache serves it all

    ok($e->remove_all, 'docker rmi: no image left');
    $up->stop;
    sleep 2;    # past the tag's TTL

    $offset = -s $m->dir . '/cache.log';
    docker_pulled('upstream stopped');
    my $cache = log_since($m->dir . '/cache.log', $offset);

    like($cache, qr{^(?:HEAD|GET) /v2/library/dockimg/manifests/v1 HTTP/1\.1 stale$}m,
         'the tag: the cached copy, stale');
    like($cache, qr{^GET /v2/library/dockimg/blobs/\Q$dockimg->{layers}[1]{digest}\E HTTP/1\.1 hit$}m,
         'the big layer: a hit');
}

ok($e->stop, 'dockerd stopped');
$m->stop;

done_testing();
