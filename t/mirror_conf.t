#!/usr/bin/perl

# conf-examples/mirror.conf as it is shipped, its Docker Hub upstream
# pointed at a local registry (and its CA file one CA of the test's own:
# the upstream is plain HTTP, and the system's bundle of some 140
# certificates takes nginx 6 to 8 s to parse under AddressSanitizer, whose
# malloc unwinds each stack, which outran RegTools::start_nginx's 10 s
# under `make test-asan`): nginx -t, then pulls by the prefixed name, the
# short one (library=on) and docker's mirror form (?ns=docker.io), a blob,
# and the access log's cache= field.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(run_cmd slurp spew free_port start_nginx stop_nginx);
use ConfExample qw(render_example make_ca);

my $NGINX = $ENV{REGTEST_NGINX} || '/usr/sbin/nginx';
my $CA = '/etc/ssl/certs/ca-certificates.crt';

my $dir = tempdir('mirror-conf-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

my $up = RegTest->new();
my $img = $up->push_image('library/busybox', 'latest');

my $port = free_port();
my ($text, @missing) = render_example('mirror.conf', $dir,
    ports => { 5000 => $port },
    subst => [[qr{https://registry-1\.docker\.io},
               'http://127.0.0.1:' . $up->port],
              [qr{\Q$CA\E}, "$dir/etc/ca.crt"]]);
is(join(', ', @missing), '', 'mirror.conf rendered with the test\'s paths');

make_ca("$dir/etc", 'ca', '/CN=mirror_conf.t CA');
spew("$dir/nginx.conf", $text);

my ($rc, $out) = run_cmd([$NGINX, '-t', '-p', "$dir/", '-c', "$dir/nginx.conf"],
                         env => { RegTest::nginx_env($dir) });
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

stop_nginx($n);

my $log = slurp("$dir/log/registry.access.log");
like($log, qr{"GET /v2/docker.io/library/busybox/manifests/latest HTTP/1.1" 200 \d+ cache=miss},
     'the access log: a miss');
like($log, qr{"GET /v2/docker.io/busybox/manifests/latest HTTP/1.1" 200 \d+ cache=hit},
     'then a hit');
unlike(slurp("$dir/log/error.log"), qr/\[(alert|crit|emerg)\]/,
       'no alerts in error.log');
is(RegTest::sanitizer_reports($dir), '', 'no sanitizer reports');

$up->stop;

done_testing();
