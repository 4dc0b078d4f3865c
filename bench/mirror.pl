#!/usr/bin/perl

# The pull-through cache's benchmark (issue 17), beside bench/run.pl:
#
#   perl bench/mirror.pl [--rounds 3] [--secs 5] [--clients 20] [--no-save]
#
# Starts on 127.0.0.1 an upstream (nginx + the module) holding a 64 MiB
# blob and a 1 MiB one, then
#   M  nginx + the module mirroring it (conf-examples/mirror.conf's
#      upstream location), and
#   D  docker-registry (distribution 2.8.2) in proxy mode
#      (proxy: remoteurl: the upstream), on a store of its own;
# and measures
#   - cold miss: --clients clients (curl) pulling the 64 MiB blob from a
#     cold cache at once: the wall time until all have it, and the GETs
#     of the blob the upstream saw;
#   - hit vs local: wrk on the 1 MiB blob once cached by M, against the
#     same bytes pushed to a local repository of M (target: >= 0.95x),
#     and D's cached blob, requests/s, the median of --rounds runs.
# Prints a markdown table, also written to bench/results/mirror-*.md.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Getopt::Long;
use POSIX qw(strftime);
use Time::HiRes qw(time);

my $BENCH = dirname(abs_path(__FILE__));
my $REPO = dirname($BENCH);

use lib dirname(dirname(abs_path(__FILE__))) . '/t/lib';
use RegTest;
use RegTools qw(start_distribution stop_distribution run_cmd spew);
use MirrorTest;

my %o = (rounds => 3, secs => 5, clients => 20, save => 1);
GetOptions('rounds=i' => \$o{rounds}, 'secs=i' => \$o{secs},
           'clients=i' => \$o{clients}, 'save!' => \$o{save})
    or die "usage: $0 [--rounds N] [--secs N] [--clients N] [--no-save]\n";

my $tmp = tempdir('bench-mirror-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

sub say_step { print STDERR "# @_\n" }

sub median {
    my @v = sort { $a <=> $b } @_;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

# the upstream's GETs of a blob, from its access log
sub upstream_gets {
    my ($up, $digest) = @_;
    return MirrorTest::upstream_hits($up, qr{"GET /v2/lib/[^ ]*/blobs/\Q$digest\E });
}

# $n curls at once; the wall time until all are done, and how many got
# the right bytes
sub cold_pull {
    my ($url, $n, $digest) = @_;

    my $t0 = time;
    my @pids;

    for my $i (1 .. $n) {
        my $pid = fork();
        die "fork: $!\n" unless defined $pid;
        if ($pid == 0) {
            my $out = "$tmp/cold-$$";
            system('curl', '-sSfL', '-o', $out, $url) == 0 or POSIX::_exit(1);
            my ($rc, $sum) = run_cmd(['sha256sum', $out]);
            unlink $out;
            POSIX::_exit($sum =~ /^\Q$digest\E / ? 0 : 1);
        }
        push @pids, $pid;
    }

    my $good = 0;
    for (@pids) {
        waitpid($_, 0);
        $good++ if $? == 0;
    }

    return (time - $t0, $good);
}

sub wrk_rps {
    my ($url) = @_;
    my ($rc, $out) = run_cmd(['wrk', '-t2', '-c16', "-d$o{secs}s", $url]);
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    die "wrk $url: $out\n" unless $rc == 0 && defined $rps;
    return $rps;
}

###############################################################################

say_step('the upstream: a 64 MiB blob and a 1 MiB one');

my $up = RegTest->new();
my $big = join '', map { pack('N', $_) x 4096 } 1 .. 4096;     # 64 MiB
my $small = substr($big, 0, 1024 * 1024);
my $bd = $up->push_blob('lib/big', $big);
my $sd = $up->push_blob('lib/small', $small);
(my $bhex = $bd) =~ s/^sha256://;
my $upurl = 'http://127.0.0.1:' . $up->port;

say_step('M: the module mirroring it; D: docker-registry in proxy mode');

my $m = MirrorTest::mirror($upurl, opts => { workers => 2 });
my $d = start_distribution("$tmp/dist", proxy => $upurl);
my $murl = 'http://127.0.0.1:' . $m->port;

my @rows;

# cold miss, --clients at once

say_step("cold miss: $o{clients} clients on the 64 MiB blob, M then D");
my ($mt, $mgood) = cold_pull("$murl/v2/up/lib/big/blobs/$bd", $o{clients},
                             $bhex);
my $mfetch = upstream_gets($up, $bd);
my ($dt, $dgood) = cold_pull("$d->{url}/v2/lib/big/blobs/$bd", $o{clients},
                             $bhex);
my $dfetch = upstream_gets($up, $bd) - $mfetch;

push @rows,
    ["cold miss, $o{clients} clients, 64 MiB: upstream fetches", $mfetch,
     $dfetch, 'M: 1'],
    ["cold miss, $o{clients} clients, 64 MiB: s until all have it",
     sprintf('%.2f', $mt), sprintf('%.2f', $dt), ''],
    ["cold miss, $o{clients} clients: clients with the right bytes",
     $mgood, $dgood, "$o{clients}"];

# hit vs local

say_step('hit vs local: the 1 MiB blob cached, and pushed locally');
$m->req('GET', "/v2/up/lib/small/blobs/$sd");
$m->push_blob('mine/small', $small);
run_cmd(['curl', '-sSfo', '/dev/null', "$d->{url}/v2/lib/small/blobs/$sd"]);
sleep 1;

my (@hit, @local, @dhit);
for my $round (1 .. $o{rounds}) {
    push @hit, wrk_rps("$murl/v2/up/lib/small/blobs/$sd");
    push @local, wrk_rps("$murl/v2/mine/small/blobs/$sd");
    push @dhit, wrk_rps("$d->{url}/v2/lib/small/blobs/$sd");
}

my ($h, $l, $dh) = (median(@hit), median(@local), median(@dhit));
push @rows,
    ['1 MiB blob GET, cache hit: req/s', sprintf('%.0f', $h),
     sprintf('%.0f', $dh), sprintf('>= 0.95x local: %.2fx', $h / $l)],
    ['1 MiB blob GET, local blob of M: req/s', sprintf('%.0f', $l), 'n/a', ''];

stop_distribution($d);
$m->stop;
$up->stop;

###############################################################################

my ($rc, $cpus) = run_cmd(['nproc']);
chomp $cpus;
my ($rc2, $commit) = run_cmd(['git', '-C', $REPO, 'rev-parse', '--short',
                              'HEAD']);
chomp $commit;

my $report = "# Mirror benchmark, " . strftime('%Y-%m-%dT%H%MZ', gmtime)
    . "\n\nmodule at $commit, $cpus CPUs, $o{rounds} rounds of "
    . "$o{secs} s (wrk -t2 -c16), $o{clients} cold clients (curl)\n\n"
    . "| measurement | M (module) | D (distribution proxy) | target |\n"
    . "|---|---|---|---|\n"
    . join('', map { "| @{[ join ' | ', @$_ ]} |\n" } @rows);

print $report;

if ($o{save}) {
    my $file = "$BENCH/results/mirror-" . strftime('%Y-%m-%dT%H%MZ', gmtime)
               . '.md';
    spew($file, $report);
    say_step("written to $file");
}

# the servers' stop() checked their error logs as tests: the plan, so that
# the script exits 0
Test::More::done_testing();
