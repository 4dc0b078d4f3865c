#!/usr/bin/perl

# conf-examples/mirror.conf as it is shipped, its Docker Hub upstream
# pointed at a local registry (and its CA file one CA of the test's own:
# the upstream is plain HTTP, and the system's bundle of some 140
# certificates takes nginx 6 to 8 s to parse under AddressSanitizer, whose
# malloc unwinds each stack, which outran RegTools::start_nginx's 10 s
# under `make test-asan`): nginx -t, then pulls by the prefixed name, the
# short one (library=on), containerd's mirror form (?ns=docker.io) and
# docker's registry-mirrors form (a plain name: default=on), a blob, the
# access log's cache= field; local repositories under
# registry_local_prefix beside the default upstream; and the
# configurations of default=on and registry_local_prefix nginx refuses.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use lib 't/lib';
use JSON::PP ();
use RegTest;
use MirrorTest;
use RegTools qw(run_cmd slurp spew free_port start_nginx stop_nginx);
use ConfExample qw(render_example make_ca);

my $NGINX = $ENV{REGTEST_NGINX} || '/usr/sbin/nginx';
my $CA = '/etc/ssl/certs/ca-certificates.crt';

my $dir = tempdir('mirror-conf-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

my $up = RegTest->new();
my $img = $up->push_image('library/busybox', 'latest',
                          layers => ['layer one ' . rand(), 'layer two']);

my $port = free_port();
my ($text, @missing) = render_example('mirror.conf', $dir,
    ports => { 5000 => $port },
    subst => [[qr{https://registry-1\.docker\.io},
               'http://127.0.0.1:' . $up->port],
              [qr{\Q$CA\E}, "$dir/etc/ca.crt"]]);
is(join(', ', @missing), '', 'mirror.conf rendered with the test\'s paths');

make_ca("$dir/etc", 'ca', '/CN=mirror_conf.t CA');

# nginx -t of a configuration text: (exit status, output)
sub nginx_t {
    my ($conf) = @_;
    spew("$dir/nginx.conf", $conf);
    return run_cmd([$NGINX, '-t', '-p', "$dir/", '-c', "$dir/nginx.conf"],
                   env => { RegTest::nginx_env($dir) });
}

for my $bad (
    [ 'two default upstreams', qr{prefix=ghcr\.io/;}, 'prefix=ghcr.io/ default=on;',
      qr{registry_upstream "ghcr": another upstream is the default already} ],
    [ 'a local prefix without a default upstream', qr{ default=on;}, ';',
      qr{registry_local_prefix needs a registry_upstream with default=on} ],
    [ 'a local prefix that is an upstream\'s', qr{registry_local_prefix team/;},
      'registry_local_prefix team/ ghcr.io/;',
      qr{registry_local_prefix "ghcr.io/" is the prefix of registry_upstream "ghcr"} ],
    [ 'a local prefix without its slash', qr{registry_local_prefix team/;},
      'registry_local_prefix team;', qr{invalid local prefix "team": NAME/ needed} ],
) {
    my ($name, $re, $to, $says) = @$bad;
    (my $conf = $text) =~ s/$re/$to/ or die "$name: no $re in mirror.conf\n";
    my ($rc, $out) = nginx_t($conf);
    isnt($rc, 0, "nginx -t refuses $name");
    like($out, $says, '... saying so');
}

my ($rc, $out) = nginx_t($text);
is($rc, 0, 'nginx -t') or diag($out);

my $n = start_nginx("$dir/nginx.conf", $dir, $port);
my $http = HTTP::Tiny->new(timeout => 30);
my $base = "http://127.0.0.1:$port";

my $r = $http->get("$base/v2/docker.io/library/busybox/manifests/latest");
is($r->{status}, 200, 'docker.io/library/busybox');
is($r->{content}, $img->{manifest}, 'the upstream\'s manifest');

$r = $http->get("$base/v2/docker.io/busybox/manifests/latest");
is($r->{content}, $img->{manifest}, 'docker.io/busybox, library=on');

$r = $http->get("$base/v2/library/busybox/manifests/latest?ns=docker.io");
is($r->{content}, $img->{manifest}, 'the mirror form, ?ns=docker.io');

$r = $http->get("$base/v2/docker.io/busybox/blobs/$img->{layers}[0]");
is(RegTest::digest($r->{content}), $img->{layers}[0], 'a blob');

$r = $http->request('PUT', "$base/v2/docker.io/busybox/manifests/x",
                    { content => $img->{manifest} });
is($r->{status}, 405, 'no push to a mirrored prefix');

# docker's registry-mirrors form: a plain name, neither prefix nor ?ns=,
# is the default upstream's, the same cached repository

$r = $http->get("$base/v2/library/busybox/manifests/latest");
is($r->{status}, 200, 'docker\'s registry-mirrors form, library/busybox');
is($r->{content}, $img->{manifest}, '... the upstream\'s manifest');
$r = $http->get("$base/v2/library/busybox/blobs/$img->{layers}[1]");
is(RegTest::digest($r->{content}), $img->{layers}[1], '... a blob');
ok(-f "$dir/store/docker/registry/v2/repositories/docker.io/library/busybox/"
      . '_layers/sha256/' . substr($img->{layers}[1], 7) . '/link',
   '... kept under docker.io/library/busybox');
is(MirrorTest::upstream_hits($up, qr{"GET /v2/library/busybox/manifests/latest }),
   1, 'one upstream GET of the manifest for all four names');

$r = $http->get("$base/v2/library/nope/manifests/latest");
is($r->{status}, 404, 'a plain name the upstream lacks: 404');
is(MirrorTest::upstream_hits($up, qr{"GET /v2/library/nope/manifests/latest }),
   1, '... asked upstream');

# an ns= of a registry without an upstream is not the default's
$r = $http->get("$base/v2/library/busybox/manifests/latest?ns=quay.io");
is($r->{status}, 404, '?ns=quay.io: a local name, not found');
is(MirrorTest::upstream_hits($up, qr{"GET /v2/library/busybox/manifests/latest }),
   1, '... not asked of the default upstream');

$r = $http->request('PUT', "$base/v2/someone/app/manifests/v1",
                    { content => $img->{manifest},
                      headers => { 'Content-Type' => $img->{type} } });
is($r->{status}, 405, 'no push to a plain name outside registry_local_prefix');

# registry_local_prefix team/: local repositories, pushed and pulled as ever

my $layer = 'a local layer ' . rand();
my $layer_digest = RegTest::digest($layer);
my $config = '{"architecture":"amd64","os":"linux"}';
my $config_digest = RegTest::digest($config);
my $manifest = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => 'application/vnd.oci.image.manifest.v1+json',
    config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                digest => $config_digest, size => length $config },
    layers => [{ mediaType => 'application/vnd.oci.image.layer.v1.tar',
                 digest => $layer_digest, size => length $layer }],
});

for my $blob ([$config_digest, $config], [$layer_digest, $layer]) {
    $r = $http->request('POST',
                        "$base/v2/team/app/blobs/uploads/?digest=$blob->[0]",
                        { content => $blob->[1], headers =>
                          { 'Content-Type' => 'application/octet-stream' } });
    is($r->{status}, 201, "a local push of $blob->[0]");
}

$r = $http->request('PUT', "$base/v2/team/app/manifests/v1",
    { content => $manifest,
      headers => { 'Content-Type' => 'application/vnd.oci.image.manifest.v1+json' } });
is($r->{status}, 201, 'a local manifest under team/');
$r = $http->get("$base/v2/team/app/manifests/v1");
is($r->{content}, $manifest, '... pulled back');
is(MirrorTest::upstream_hits($up, qr{ /v2/team/}), 0, '... never asked upstream');

stop_nginx($n);

my $log = slurp("$dir/log/registry.access.log");
like($log, qr{"GET /v2/docker.io/library/busybox/manifests/latest HTTP/1.1" 200 \d+ cache=miss},
     'the access log: a miss');
like($log, qr{"GET /v2/docker.io/busybox/manifests/latest HTTP/1.1" 200 \d+ cache=hit},
     'then a hit');
like($log, qr{"GET /v2/library/busybox/manifests/latest HTTP/1.1" 200 \d+ cache=hit},
     'a hit for the plain name too');
like($log, qr{"GET /v2/team/app/manifests/v1 HTTP/1.1" 200 \d+ cache=-$}m,
     'no cache result for a local repository');
unlike(slurp("$dir/log/error.log"), qr/\[(alert|crit|emerg)\]/,
       'no alerts in error.log');
is(RegTest::sanitizer_reports($dir), '', 'no sanitizer reports');

$up->stop;

done_testing();
