#!/usr/bin/perl

# registry_health: 200 {"status":"ok"} on a good store, and leaves no
# probe file behind; 503 {"status":"unhealthy","reason":...} when the
# store really fails a write: its temporary directory replaced by a file
# (ENOTDIR), the file system full (a 4 MiB tmpfs, as t/disk_full.t), the
# store directory removed under nginx; healthy again once the store is
# (but for the removed directory, which no worker can serve again).  An
# answer holds for a second: many checks, one after the other and at
# once, cost at most one probe per second.  Without a thread pool the
# probe runs in the event loop.  registry_health needs registry_root.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(remove_tree make_path);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;
use RegTools qw(run_cmd);

my $dir = tempdir('health-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

# the store on a small tmpfs where this machine allows one

my $tmpfs = 0;
my $mnt = "$dir/mnt";
make_path($mnt);

if ($> == 0
    && system('mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', $mnt) == 0)
{
    $tmpfs = 1;
}

END { system('umount', $mnt) if $tmpfs; }

my $root = "$mnt/store";
my $v2 = "$root/docker/registry/v2";
make_path($root);

my $t = RegTest->new(
    root => $root,
    workers => 1,
    expect_in_log => qr/Not a directory|No such file or directory/,
    server_extra => <<"EOF");
        location = /health {
            registry_health;
            registry_root $root;
        }

        location = /health-inline {
            registry_health;
            registry_root $root;
            registry_thread_pool off;
        }
EOF

sub health {
    my ($path) = @_;
    my $r = $t->req('GET', $path // '/health');
    my $j = eval { decode_json($r->{content}) } || {};
    return ($r->{status}, $j, $r);
}

# waits out the second an answer holds
sub next_probe { sleep 1.2 }

# ---- healthy ----

my ($status, $j, $r) = health();
is($status, 200, 'a good store: 200');
is_deeply($j, { status => 'ok' }, '{"status":"ok"}');
is($r->{headers}{'content-type'}, 'application/json', 'JSON');
is($r->{headers}{'cache-control'}, 'no-store', 'not to be cached');

opendir(my $dh, "$v2/_ngx_tmp") or die "$v2/_ngx_tmp: $!\n";
is_deeply([ grep { !/^\.\.?$/ } readdir $dh ], [],
          'the probe left nothing in _ngx_tmp');
closedir $dh;

$r = $t->req('HEAD', '/health');
is("$r->{status} '$r->{content}'", "200 ''", 'HEAD: 200, no body');
is($t->req('POST', '/health')->{status}, 405, 'POST: 405');

($status, $j) = health('/health-inline');
is($status, 200, 'without a thread pool: 200');

# ---- the temporary directory replaced by a file ----

remove_tree("$v2/_ngx_tmp");
RegTest::spew("$v2/_ngx_tmp", "not a directory\n");
next_probe();

($status, $j) = health();
is($status, 503, '_ngx_tmp is a file: 503');
is($j->{status}, 'unhealthy', '"status":"unhealthy"');
like($j->{reason} // '', qr/^cannot create a file in the store: Not a directory/,
     'the reason: the step and the system error');

($status, $j) = health('/health-inline');
is($status, 503, 'without a thread pool: 503 too');

# one probe a second, however many checks: sequential and concurrent

sub unhealthy_lines {
    my @l = grep { /registry: unhealthy: / } split /\n/, $t->error_log;
    return scalar @l;
}

my $lines = unhealthy_lines();
my $start = time;

for (1 .. 20) {
    health();
    sleep 0.15;
}

my @pids;
for my $i (1 .. 8) {
    my $pid = fork() // die "fork: $!\n";
    if ($pid == 0) {
        my ($s) = health();
        POSIX::_exit($s == 503 ? 0 : 1);
    }
    push @pids, $pid;
}
my $bad = 0;
for my $pid (@pids) {
    waitpid($pid, 0);
    $bad++ if $?;
}
is($bad, 0, '8 concurrent checks: all 503');

my $elapsed = time - $start;
my $probes = unhealthy_lines() - $lines;
$elapsed = sprintf('%.1f', $elapsed);
cmp_ok($probes, '>=', 1, "28 checks in ${elapsed}s: probed again");
cmp_ok($probes, '<=', int($elapsed) + 2,
       "... $probes times: at most once a second");

unlink "$v2/_ngx_tmp";
next_probe();

($status, $j) = health();
is($status, 200, 'the directory gone: the probe makes it, 200');

# ---- a full file system ----

SKIP: {
    skip 'no tmpfs mount on this machine', 4 unless $tmpfs;

    # fill it: a file as big as it takes

    open(my $fh, '>', "$mnt/filler") or die "filler: $!\n";
    my $chunk = 'f' x 65536;
    while (syswrite($fh, $chunk)) { }
    close $fh;
    next_probe();

    ($status, $j) = health();
    is($status, 503, 'a full disk: 503');
    like($j->{reason} // '', qr/No space left on device/,
         'the reason: no space left');

    unlink "$mnt/filler";
    next_probe();

    ($status, $j) = health();
    is($status, 200, 'space again: 200');

    opendir(my $dh, "$v2/_ngx_tmp") or die "$v2/_ngx_tmp: $!\n";
    is_deeply([ grep { !/^\.\.?$/ } readdir $dh ], [],
              'the failed probe left nothing either');
    closedir $dh;
}

# ---- the store removed under nginx ----

remove_tree($v2);
next_probe();

($status, $j) = health();
is($status, 503, 'the store removed: 503');
like($j->{reason} // '', qr/No such file or directory/,
     'the reason: no such directory');

make_path($v2);
next_probe();

($status) = health();
is($status, 503, 'made again: still 503, the workers hold the old one');

$t->stop;

# ---- registry_health needs registry_root ----

my $conf = "$dir/noroot.conf";
RegTest::spew($conf, <<"EOF");
load_module $RegTest::MODULE;
error_log $dir/noroot.log;
pid $dir/noroot.pid;
events { }
http {
    server {
        listen 127.0.0.1:1;
        location = /health { registry_health; }
    }
}
EOF

my ($rc, $out) = run_cmd([$RegTest::NGINX, '-t', '-p', "$dir/", '-c', $conf],
                         env => { RegTest::nginx_env($dir) });
isnt($rc, 0, 'nginx -t: registry_health without registry_root fails');
like($out, qr/"registry_health" needs "registry_root"/, '... and says why');

done_testing();
