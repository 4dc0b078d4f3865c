#!/usr/bin/perl

# The benchmark suite of ngx_http_registry_module: `make bench`, or
#
#   perl bench/run.pl [--rounds 3] [--secs 3] [--quick] [--keep]
#                     [--tmpdir DIR] [--no-save] [--workers N]
#                     [--only blob,manifest,listing,h2,push,fairness,latency,
#                             memory,gc,uploads_open]
#
# Starts on 127.0.0.1, on ONE store in a temporary directory:
#   A  nginx + the module, B  the same nginx serving the store's blob files
#   as static files, C  docker-registry (distribution 2.8.2);
# and, for the listing and latency groups, a second A and C on a second
# store of 100,000 repositories (the listings at scale); and, for the gc
# group, an A with the admin location on fresh copies of a store of
# 100,000 blobs, against docker-registry garbage-collect on other copies;
# runs every measurement interleaved (A, B, C, A, B, C, ...), and prints a
# markdown table of medians and ratios against the targets of the issue
# "Performance", also written to bench/results/.  bench/README.md says what
# each line measures.  Everything started is stopped and the temporary
# directory removed at the end, on failure, and on Ctrl-C.

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA ();
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use Getopt::Long;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

use lib dirname(abs_path(__FILE__)) . '/lib';

use Bench::Big;
use Bench::Content;
use Bench::Gc;
use Bench::Load;
use Bench::Noise;
use Bench::Push;
use Bench::Report;
use Bench::Servers;
use Bench::Util qw(say_step median spew slurp run_cmd spawn_code reap
                   running stop_all_children);

my $BENCH = dirname(abs_path(__FILE__));
my $REPO = dirname($BENCH);
my $MIB = 1024 * 1024;
my $MB = 1e6;
my $MAIN_PID = $$;

my $ACCEPT = 'Accept: application/vnd.oci.image.manifest.v1+json, '
           . 'application/vnd.oci.image.index.v1+json, '
           . 'application/vnd.docker.distribution.manifest.v2+json, '
           . 'application/vnd.docker.distribution.manifest.list.v2+json';

my %ST;    # the run: options, temp dir, servers, content, limits, rows

# the measurements, in the order they run (--only picks some)
my @GROUPS = (
    [blob => \&blob_rows], [manifest => \&manifest_rows],
    [listing => \&listing_rows], [h2 => \&h2_rows], [push => \&push_rows],
    [fairness => \&fairness_rows], [latency => \&latency_rows],
    [memory => \&memory_rows], [gc => \&gc_rows],
    [uploads_open => \&uploads_open_rows],
);

main();

sub main {
    my $opt = options();
    $ST{opt} = $opt;
    $ST{started} = time;
    $ST{load_start} = loadavg();

    $SIG{$_} = \&on_signal for qw(INT TERM HUP);

    my $ok = eval { run(); 1 };
    my $err = $@;

    cleanup();

    if (!$ok) {
        print STDERR "bench: $err";
        exit 1;
    }
}

# dies; and, should the die land in an eval of a measurement, the next
# step or round dies again (interrupted())
sub on_signal {
    my ($sig) = @_;
    $ST{signal} = $sig;
    die "interrupted by SIG$sig\n";
}

sub interrupted {
    die "interrupted by SIG$ST{signal}\n" if $ST{signal} && !$ST{cleaned};
}

END {
    cleanup() if $$ == $MAIN_PID;
}

sub options {
    my %o = (rounds => 3, secs => 3, tmpdir => $ENV{BENCH_TMPDIR}
             || File::Spec->tmpdir, workers => cpu_count());

    GetOptions('rounds=i' => \$o{rounds}, 'secs=f' => \$o{secs},
               'quick' => \$o{quick}, 'keep' => \$o{keep},
               'tmpdir=s' => \$o{tmpdir}, 'save!' => \$o{save},
               'workers=i' => \$o{workers}, 'only=s' => \$o{only})
        or die "usage: $0 [--rounds N] [--secs S] [--quick] [--keep] "
               . "[--tmpdir DIR] [--no-save] [--workers N] "
               . "[--only GROUP,...]\n";

    if ($o{only}) {
        my %known = map { $_->[0] => 1 } @GROUPS;
        my @bad = grep { !$known{$_} } split /,/, $o{only};
        die "--only: unknown @bad; groups: "
            . join(',', map { $_->[0] } @GROUPS) . "\n" if @bad;
    }

    @o{qw(rounds secs)} = (1, 1) if $o{quick};

    # a partial run does not replace the results of a whole one
    $o{save} //= !$o{only};

    return \%o;
}

sub loadavg {
    return join(' ', (split ' ', slurp('/proc/loadavg'))[0 .. 2]);
}

sub cpu_count {
    my @cpus = slurp('/proc/cpuinfo') =~ /^processor\s*:/mg;
    return $ENV{BENCH_WORKERS} || scalar(@cpus) || 2;
}

# ---- the run ----

sub run {
    check_tools();
    setup();

    my @rows;
    for my $group (@GROUPS) {
        my ($name, $code) = @$group;
        push @rows, $code->() if want_group($name);
    }

    end_phase();
    $ST{rows} = \@rows;
    report();
}

sub want_group {
    my ($name) = @_;
    my $only = $ST{opt}{only} or return 1;
    return grep { $_ eq $name } split /,/, $only;
}

sub check_tools {
    my @missing = grep { !Bench::Util::which($_) }
                  qw(wrk h2load ab hyperfine curl openssl docker-registry dd);
    die "missing tools: @missing (make deps-bench)\n" if @missing;
    die "no module: $REPO/build/ngx_http_registry_module.so (make)\n"
        unless -f "$REPO/build/ngx_http_registry_module.so";
    die "no nginx: $Bench::Servers::NGINX\n" unless -x $Bench::Servers::NGINX;
}

sub setup {
    my $opt = $ST{opt};

    $ST{tmp} = tempdir('ngx-registry-bench-XXXXXX', DIR => $opt->{tmpdir});
    my $big = want_group('listing') || want_group('latency');
    check_free_space($ST{tmp}, 14 + (want_group('latency') ? 5 : 0));
    say_step("temp dir $ST{tmp}");

    make_path("$ST{tmp}/work");
    $ST{store} = "$ST{tmp}/store";

    $ST{big} = Bench::Big->new("$ST{tmp}/work");
    say_step('1 GiB base file, its 16 MiB chunks and SHA-256 prefix ready');

    $ST{c} = Bench::Content::load($ST{store}, $ST{big});

    my ($crt, $key) = Bench::Servers::make_cert($ST{tmp});
    $ST{srv} = Bench::Servers::start_all(
        dir => $ST{tmp}, store => $ST{store}, workers => $opt->{workers},
        module => "$REPO/build/ngx_http_registry_module.so",
        cert => $crt, key => $key);

    setup_big(crt => $crt, key => $key) if $big;

    $ST{rss_start} = worker_rss();
}

# the second store (Bench::Content::load_big) and its A and C
sub setup_big {
    my (%o) = @_;

    my $store = big_store_dir();
    $ST{bc} = Bench::Content::load_big($store);
    make_path("$ST{tmp}/big");
    $ST{big_srv} = Bench::Servers::start_all(
        dir => "$ST{tmp}/big", store => $store, only => [qw(A C)],
        workers => $ST{opt}{workers},
        module => "$REPO/build/ngx_http_registry_module.so",
        cert => $o{crt}, key => $o{key});
    settle();
}

# The second store is 1.2 million files and directories.  On a tmpfs of
# its own (root, as t/scale.t does) writing it takes seconds and removing
# it is one umount; on the temp dir's file system removing it can take
# many minutes (ext4 mounted with discard: 9 min on the 2-core VM).
# Either way its listings are read from memory (dentry and page caches).
sub big_store_dir {
    my $mnt = "$ST{tmp}/big-store";
    make_path($mnt);

    if ($> == 0 && system('mount', '-t', 'tmpfs', '-o',
                          'size=4g,nr_inodes=2m', 'tmpfs', $mnt) == 0) {
        $ST{big_mount} = $mnt;
        $ST{big_where} = "a tmpfs of its own ($mnt)";
    } else {
        say_step('no tmpfs for the second store (not root?): it goes to '
                 . "$mnt, and removing it at the end can take minutes");
        check_free_space($ST{tmp}, 14 + 5 + (want_group('latency') ? 5 : 0));
        $ST{big_where} = "$mnt (the temp dir's file system)";
    }

    return "$mnt/store";
}

sub check_free_space {
    my ($dir, $gib) = @_;

    my $free = free_gib($dir);
    die sprintf("%s has %.1f GiB free; the benchmark needs %d GiB\n",
                $dir, $free, $gib)
        if $free < $gib;
}

sub free_gib {
    my ($dir) = @_;

    my ($rc, $out) = run_cmd(['df', '-P', '-k', $dir]);
    my (undef, $line) = split /\n/, $out;
    return ((split ' ', $line // '')[3] // 0) / $MIB;
}

# stops every server and child, removes the temp dir; each step is tried
# even when one before it failed
sub cleanup {
    return if $ST{cleaned}++;

    local $SIG{$_} = 'IGNORE' for qw(INT TERM HUP);

    for my $srv (grep { $_ } @ST{qw(big_srv srv)}) {
        eval { Bench::Servers::stop_all($srv); 1 }
            or print STDERR "bench: stopping the servers: $@";
    }
    eval { stop_all_children(); 1 }
        or print STDERR "bench: stopping children: $@";

    return unless $ST{tmp} && -d $ST{tmp};

    # the gc group's copies, if a failure left one mounted
    system('umount', '-l', $_) for keys %{ $ST{gc_mounts} || {} };

    if ($ST{opt}{keep}) {
        say_step("kept $ST{tmp}" . ($ST{big_mount}
            ? "; the second store is still mounted: umount $ST{big_mount}"
            : ''));
    } else {
        if ($ST{big_mount}) {
            system('umount', $ST{big_mount}) == 0
                or system('umount', '-l', $ST{big_mount}) == 0
                or print STDERR "bench: umount $ST{big_mount} failed\n";
        }
        say_step("removing $ST{tmp}");
        system('rm', '-rf', '--', $ST{tmp});
    }
}

# ---- measurement plumbing ----

# Starts a step of the run: says so, and measures how much CPU other
# processes used during the previous step (Bench::Noise).
sub phase {
    my ($name) = @_;

    interrupted();
    end_phase();
    say_step($name);
    $ST{phase} = { name => $name, snap => Bench::Noise::snapshot() };
}

sub end_phase {
    my $p = delete $ST{phase} or return;

    my $now = Bench::Noise::snapshot();
    push @{ $ST{noise} }, {
        name => $p->{name},
        cpu  => Bench::Noise::foreign_secs($p->{snap}, $now),
        wall => $now->{at} - $p->{snap}{at},
    };
}

# $code->($server, $round) for every round, the servers in turn; a server
# whose sanity check failed gets that error instead of measurements.
# %o: once => [servers measured in the first round only], after => a
# check run again once the rounds are over (a failure fails the server's
# cell: a wrong answer is caught even when it appears under load).
sub interleaved {
    my ($servers, $check, $code, %o) = @_;

    my %broken = map { $_ => $check ? $check->($_) : '' } @$servers;
    my %once = map { $_ => 1 } @{ $o{once} || [] };
    my %res;

    for my $round (1 .. $ST{opt}{rounds}) {
        local $ST{round} = $round;

        for my $s (@$servers) {
            interrupted();
            next if $once{$s} && $round > 1;
            push @{ $res{$s} }, $broken{$s} ? { error => $broken{$s} }
                                            : $code->($s, $round);
        }
    }

    for my $s (grep { $o{after} && !$broken{$_} } @$servers) {
        my $err = $o{after}->($s) or next;
        $_->{error} ||= "after the measurements: $err" for @{ $res{$s} };
    }

    return \%res;
}

# Waits (at most $max s) until a server has stopped using the CPU: it
# used less than 5 % of a core over 0.5 s.  Distribution keeps working
# on the requests a stopped wrk left unanswered (a catalog page at
# 100,000 repositories takes it seconds), which would weigh on whatever
# is measured next.
sub wait_quiet {
    my ($srv, $max) = @_;

    my @pids = ($srv->{pid}, $srv->{kind} eq 'nginx'
                             ? Bench::Servers::worker_pids($srv->{pid}) : ());
    my $ticks = sub {
        my $t = 0;
        for my $pid (@pids) {
            my $stat = slurp("/proc/$pid/stat");
            my @f = split ' ', ($stat =~ /\) (.*)$/s)[0] // '';
            $t += ($f[11] // 0) + ($f[12] // 0);
        }
        return $t;
    };

    my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
    my $deadline = time + ($max || 60);

    while (time < $deadline) {
        my $before = $ticks->();
        sleep 0.5;
        return if ($ticks->() - $before) / $hz < 0.025;
    }
}

# a table row from interleaved results: the median of $metric (a key, or
# a sub of a result); any failed run fails the server's cell
sub make_row {
    my ($name, $unit, $res, $metric, %o) = @_;

    my $row = { name => $name, unit => $unit, fmt => $o{fmt},
                target => $o{target}, error => {} };

    for my $s (qw(A B C)) {
        my $runs = $res->{$s};

        if (!$runs) {
            $row->{$s} = 'n/a';
            next;
        }

        my ($bad) = grep { $_->{error} } @$runs;
        if ($bad) {
            $row->{$s} = undef;
            $row->{error}{$s} = $bad->{error};
            next;
        }

        my @values = map { ref $metric ? $metric->($_) : $_->{$metric} }
                     @$runs;
        $row->{rounds}{$s} = \@values;
        $row->{$s} = median(@values);
    }

    return $row;
}

sub url {
    my ($s, $path) = @_;
    return $ST{srv}{$s}{url} . $path;
}

# on the servers of the second store
sub big_url {
    my ($s, $path) = @_;
    return $ST{big_srv}{$s}{url} . $path;
}

# 100002 -> "100,002"
sub commify {
    my ($n) = @_;
    1 while $n =~ s/^(\d+)(\d{3})/$1,$2/;
    return $n;
}

# a blob's URL: the registry API on A and C, the static file on B
sub blob_url {
    my ($s, $blob, %o) = @_;

    my $hex = $blob->[0];
    my $base = $o{tls} ? $ST{srv}{$s}{tls_url} : $ST{srv}{$s}{url};

    return "$base/static/sha256/" . substr($hex, 0, 2) . "/$hex/data"
        if $s eq 'B';
    return "$base/v2/$ST{c}{repo}/blobs/sha256:$hex";
}

# GET through HTTP::Tiny: '' when $ok->(response) holds, else the reason
sub check_get {
    my ($url, $ok, @headers) = @_;

    my $http = HTTP::Tiny->new(timeout => 120, max_redirect => 0);
    my %h = map { split /:\s*/, $_, 2 } @headers;
    my $r = $http->get($url, { headers => \%h });

    return "GET $url: $r->{status} " . substr($r->{content} // '', 0, 200)
        unless $r->{status} == 200;
    return $ok->($r) ? '' : "GET $url: unexpected answer";
}

sub check_blob {
    my ($s, $blob) = @_;
    return check_get(blob_url($s, $blob), sub {
        Digest::SHA::sha256_hex($_[0]{content}) eq $blob->[0];
    });
}

# true when a run should be preceded by a warm-up: in the first round
# (later rounds come after measured runs of the same kind) and outside
# the rounds
sub warm_up_now {
    return !$ST{round} || $ST{round} == 1;
}

# wrk, after a 1 s warm-up of the same kind where warm_up_now
sub wrk_run {
    my ($url, %o) = @_;

    my $secs = delete $o{secs} // $ST{opt}{secs};

    Bench::Load::wrk($url, %o, secs => 1) if warm_up_now();
    return Bench::Load::wrk($url, %o, secs => $secs);
}

# targets: each has a text and a check of the row (1, 0, undef: failed)
sub at_least_times {
    my ($other, $min) = @_;
    return {
        text => "A ≥ $min × $other",
        check => sub {
            my $r = Bench::Report::ratio($_[0]{A}, $_[0]{$other});
            defined $r ? ($r >= $min ? 1 : 0) : undef;
        },
    };
}

# A at most $max (a time): "A ≤ 5 ms"
sub at_most {
    my ($max, $unit) = @_;
    return {
        text => "A ≤ $max $unit",
        check => sub {
            defined $_[0]{A} && $_[0]{A} ne 'n/a'
                ? ($_[0]{A} <= $max ? 1 : 0) : undef;
        },
    };
}

# A at least $min (a rate): "A ≥ 5,000 req/s"
sub at_least {
    my ($min, $unit) = @_;
    return {
        text => 'A ≥ ' . commify($min) . " $unit",
        check => sub {
            defined $_[0]{A} && $_[0]{A} ne 'n/a'
                ? ($_[0]{A} >= $min ? 1 : 0) : undef;
        },
    };
}

sub all_of {
    my (@t) = @_;
    return {
        text => join(' and ', map { $_->{text} } @t),
        check => sub {
            my @ok = map { $_->{check}->($_[0]) } @t;
            return undef if grep { !defined } @ok;
            return (grep { !$_ } @ok) ? 0 : 1;
        },
    };
}

# ---- blob GETs ----

sub blob_rows {
    phase('blob GET 1 MiB (wrk, 32 connections)');
    my $c = $ST{c};

    my $big = interleaved([qw(A B C)], sub { check_blob($_[0], $c->{blob1m}) },
        sub { wrk_run(blob_url($_[0], $c->{blob1m}), conns => 32) });

    phase('blob GET 4 KiB (wrk, 32 connections)');
    my $small = interleaved([qw(A B C)],
        sub { check_blob($_[0], $c->{blob4k}) },
        sub { wrk_run(blob_url($_[0], $c->{blob4k}), conns => 32) });

    phase('HEAD blob (ab, 2 x 16 connections)');
    my $head = interleaved([qw(A B C)], undef, sub { ab_run(@_) });

    phase('single-stream GET 1 GiB (curl via hyperfine)');
    my $one = interleaved([qw(A B C)], \&check_big_blob,
        sub { hyperfine_run(blob_url($_[0], $c->{blob1g})) });

    return (
        make_row('blob GET 1 MiB, 32 conns', 'req/s', $big, 'rps',
                 target => at_least_times('B', 0.95)),
        make_row('blob GET 1 MiB, 32 conns', 'MB/s', $big,
                 sub { $_[0]{rps} * $MIB / $MB }),
        make_row('blob GET 4 KiB, 32 conns', 'req/s', $small, 'rps',
                 target => at_least_times('B', 0.95)),
        make_row('blob HEAD (B: HEAD of the file)', 'req/s', $head, 'rps'),
        make_row('blob GET 1 GiB, one stream (curl)', 'MB/s', $one,
                 sub { $c->{blob1g}[1] / $_[0]{secs} / $MB }),
    );
}

sub ab_run {
    my ($s) = @_;
    my $url = blob_url($s, $ST{c}{blob1m});

    Bench::Load::ab_head($url, conns => 32, secs => 1) if warm_up_now();
    return Bench::Load::ab_head($url, conns => 32, secs => $ST{opt}{secs});
}

sub check_big_blob {
    my ($s) = @_;
    my $r = Bench::Load::curl_get(blob_url($s, $ST{c}{blob1g}),
                                  bytes => $ST{c}{blob1g}[1]);
    return $r->{error} // '';
}

sub hyperfine_run {
    my ($url) = @_;
    return Bench::Load::hyperfine_get($url, runs => 2);
}

# ---- manifests ----

sub manifest_url {
    my ($s, $ref) = @_;
    my $hex = $ST{c}{manifest}{hex};

    return url('B', "/static/sha256/" . substr($hex, 0, 2) . "/$hex/data")
        if $s eq 'B';
    return url($s, "/v2/$ST{c}{repo}/manifests/$ref");
}

sub check_manifest {
    my ($s, $ref) = @_;
    my $bytes = $ST{c}{manifest}{bytes};
    return check_get(manifest_url($s, $ref),
                     sub { $_[0]{content} eq $bytes }, $ACCEPT);
}

sub manifest_rows {
    my @rows;

    for my $how (['tag', 'latest'], ['digest', "sha256:$ST{c}{manifest}{hex}"]) {
        my ($name, $ref) = @$how;
        phase("manifest GET by $name (wrk, 32 connections)");

        my $res = interleaved([qw(A B C)], sub { check_manifest($_[0], $ref) },
            sub { wrk_run(manifest_url($_[0], $ref), conns => 32,
                          headers => [$ACCEPT]) });

        my $size = length $ST{c}{manifest}{bytes};
        push @rows,
            make_row("manifest GET by $name ($size B; B: same-size file)",
                     'req/s', $res, 'rps',
                     target => $name eq 'tag'
                         ? all_of(at_least_times('B', 0.8),
                                  at_least_times('C', 10))
                         : undef),
            make_row("manifest GET by $name, p99", 'ms', $res, 'p99_ms',
                     fmt => '%.2f');
    }

    return @rows;
}

# ---- listings ----

sub json_of {
    my ($r) = @_;
    return eval { JSON::PP->new->decode($r->{content}) } || {};
}

sub listing_rows {
    my $c = $ST{c};
    my $tags = "/v2/$c->{tags_repo}/tags/list";

    phase('tags/list, 10,000 tags (wrk, 8 connections)');
    my $tl = interleaved([qw(A C)],
        sub { check_get(url($_[0], $tags), sub {
                  @{ json_of($_[0])->{tags} || [] }
                      == $Bench::Content::TAGS }) },
        sub { wrk_run(url($_[0], $tags), conns => 8) });

    phase('_catalog, 10,000 repositories (wrk, 8 connections)');
    my $cat = catalog_series();

    phase('referrers, 1,000 referrers (wrk, 8 connections)');
    my $ref = "/v2/$c->{ref_repo}/referrers/sha256:$c->{subject}";
    my $rr = interleaved([qw(A)],
        sub { check_get(url($_[0], $ref), sub {
                  @{ json_of($_[0])->{manifests} || [] }
                      == $Bench::Content::REFERRERS }) },
        sub { wrk_run(url($_[0], $ref), conns => 8) });

    return (
        make_row('tags/list, 10,000 tags', 'req/s', $tl, 'rps',
                 fmt => '%.1f', target => at_least_times('C', 5)),
        make_row('tags/list, 10,000 tags, p99', 'ms', $tl, 'p99_ms'),
        make_row("_catalog, $ST{repo_count} repositories, whole list",
                 'lists/s', $cat, 'lists',
                 fmt => '%.1f', target => at_least_times('C', 5)),
        make_row('referrers of one subject, 1,000 referrers', 'req/s', $rr,
                 'rps', fmt => '%.1f', target => at_least(5000, 'req/s')),
        big_catalog_rows(),
        big_tags_rows(),
    );
}

# ---- listings at scale: the second store ----

# A server of the second store until its listing caches are made: the
# module's first catalog or tags/list answer in each worker waits for the
# walk of 100,000 directories (seconds), which is not what the lines
# measure.  wrk on 8 connections (both workers get some), 1 s at a time,
# until a run's slowest answer takes under 250 ms (at most 60 s).
sub prime_listing {
    my ($s, $path) = @_;

    my $t0 = time;
    while (time - $t0 < 60) {
        my $r = Bench::Load::wrk(big_url($s, $path), conns => 8, secs => 1,
                                 timeout => 30);
        return if !$r->{error} && defined $r->{max_ms} && $r->{max_ms} < 250;
    }
}

# one listing page on the second store: wrk (8 connections, for $secs),
# then, the server idle again, the time of single requests (curl, median
# of 20, or of 5 when 20 would take over 10 s)
sub page_run {
    my ($s, $path, %o) = @_;

    my $url = big_url($s, $path);
    my $srv = $ST{big_srv}{$s};
    my $r = Bench::Load::wrk($url, conns => 8, timeout => 60,
                             secs => $o{secs} || $ST{opt}{secs});
    wait_quiet($srv);
    return $r if $r->{error} || !$o{idle};

    my $t = Bench::Load::curl_times($url, count => 20);
    wait_quiet($srv);
    return { error => "idle requests: $t->{error}" } if $t->{error};

    $r->{idle_ms} = $t->{median_ms};
    return $r;
}

# '' when a listing page holds exactly @$want (under $key; in any order
# if $o{any_order}) and, if $o{next}, a Link to the next page; $o{times}
# GETs, each on a connection of its own (so that every worker answers)
sub check_page {
    my ($url, $key, $want, %o) = @_;

    my $expect = join ',', $o{any_order} ? sort @$want : @$want;

    for (1 .. $o{times} || 1) {
        my $link;
        my $err = check_get($url, sub {
            $link = $_[0]{headers}{link} // '';
            my $got = json_of($_[0])->{$key} || [];
            return join(',', $o{any_order} ? sort @$got : @$got) eq $expect;
        });
        return $err if $err;
        return "GET $url: no Link rel=\"next\"" if $o{next}
                                                  && $link !~ /rel="next"/;
    }

    return '';
}

# _catalog?n=100, a first page and one after a name in the middle, on
# the 100,002 repositories of the second store.  Distribution walks every
# repository up to `last` for each page (0.6-1.4 s alone at this size,
# 3-8 s under 8 connections): its wrk runs last 30 s (wrk counts only the
# answers that came before its end), and it is measured in the first
# round only.
sub big_catalog_rows {
    my $repos = $ST{bc}{repos};
    my $count = commify(scalar @$repos);
    my $mid = int(@$repos / 2);
    my @rows;

    my @pages = (
        ['first page', '/v2/_catalog?n=100', [ @$repos[0 .. 99] ]],
        ['middle page', "/v2/_catalog?n=100&last=$repos->[$mid]",
         [ @$repos[$mid + 1 .. $mid + 100] ]],
    );

    for my $p (@pages) {
        my ($what, $path, $want) = @$p;
        phase("_catalog $what (n=100) at $count repositories (wrk, 8 "
              . 'connections; 20 requests idle)');

        my $check = sub { check_page(big_url($_[0], $path), 'repositories',
                                     $want, next => 1,
                                     times => $_[0] eq 'A' ? 4 : 1) };
        prime_listing('A', $path);
        my $res = interleaved([qw(A C)], $check,
            sub { page_run($_[0], $path, idle => 1,
                           secs => $_[0] eq 'C' ? max_of($ST{opt}{secs}, 30)
                                                : $ST{opt}{secs}) },
            once => ['C'], after => $check);

        my $name = "_catalog $what (n=100), $count repositories";
        push @rows,
            make_row($name, 'req/s', $res, 'rps',
                     fmt => '%.1f'),
            make_row("$name, p50", 'ms', $res, 'p50_ms', fmt => '%.2f'),
            make_row("$name, p99", 'ms', $res, 'p99_ms', fmt => '%.2f'),
            make_row("$name, one request idle (curl, median of 20)", 'ms',
                     $res, 'idle_ms', fmt => '%.2f',
                     target => at_most(5, 'ms'));
    }

    return @rows;
}

# tags/list?n=100 and the whole list of the 100,000 tags of the second
# store.  Distribution 2.8.2 ignores n on tags/list (it answers every
# tag, unsorted): the page is A's only.
sub big_tags_rows {
    my $tags = $ST{bc}{tags};
    my $count = commify(scalar @$tags);
    my $list = "/v2/$ST{bc}{tags_repo}/tags/list";
    my @rows;

    for my $p (['page (n=100)', "$list?n=100", [ @$tags[0 .. 99] ], [qw(A)]],
               ['whole list', $list, $tags, [qw(A C)]]) {
        my ($what, $path, $want, $servers) = @$p;
        phase("tags/list $what at $count tags (wrk, 8 connections)");

        my $check = sub {
            check_page(big_url($_[0], $path), 'tags', $want, times => 4,
                       next => ($what =~ /page/ ? 1 : 0),
                       any_order => $_[0] eq 'C')
        };
        prime_listing('A', $path);
        my $res = interleaved($servers, $check, sub { page_run($_[0], $path) },
                              after => $check);

        push @rows,
            make_row("tags/list $what, $count tags", 'req/s', $res, 'rps',
                     fmt => '%.1f'),
            make_row("tags/list $what, $count tags, p99", 'ms', $res,
                     'p99_ms', fmt => '%.2f');
    }

    return @rows;
}

sub max_of { $_[0] > $_[1] ? $_[0] : $_[1] }

# The pages a client must GET for the whole catalog: one on A (n = all),
# pages of 1,000 on C (distribution refuses n > 1000).  Listings/s is
# requests/s over the number of pages, the pages requested in turn.
sub catalog_pages {
    my ($s) = @_;

    my $http = HTTP::Tiny->new(timeout => 120);
    my $path = $s eq 'A' ? "/v2/_catalog?n=$ST{repo_count}"
                         : '/v2/_catalog?n=1000';
    my (@pages, @names);

    while ($path && @pages < 100) {
        my $r = $http->get(url($s, $path));
        die "GET $path on $s: $r->{status}\n" unless $r->{status} == 200;

        push @pages, $path;
        push @names, @{ json_of($r)->{repositories} || [] };
        ($path) = ($r->{headers}{link} // '') =~ /<([^>]+)>;\s*rel="next"/;
    }

    return (\@pages, \@names);
}

sub catalog_series {
    my %pages;

    # every repository of the store, counted on disk
    $ST{repo_count} = $Bench::Content::REPOS + 3;

    my $check = sub {
        my ($s) = @_;
        my ($pages, $names) = eval { catalog_pages($s) };
        return $@ if $@;
        $pages{$s} = $pages;
        return @$names == $ST{repo_count} ? ''
             : "catalog of $s lists " . @$names . " of $ST{repo_count}";
    };

    return interleaved([qw(A C)], $check, sub {
        my ($s) = @_;
        my $r = wrk_run(url($s, '/'), conns => 8, paths => $pages{$s});
        $r->{lists} = $r->{rps} / @{ $pages{$s} } if $r->{rps};
        return $r;
    });
}

# ---- HTTP/2 ----

sub h2_rows {
    my $c = $ST{c};
    my $hex = $c->{manifest}{hex};
    my %man = (
        A => "$ST{srv}{A}{tls_url}/v2/$c->{repo}/manifests/latest",
        B => "$ST{srv}{B}{tls_url}/static/sha256/" . substr($hex, 0, 2)
             . "/$hex/data",
    );

    phase('HTTP/2 over TLS: manifest GET (h2load -n 20000 -c 32 -m 10)');
    my $m = interleaved([qw(A B)], undef,
        sub { h2_run($man{$_[0]}, 20000, 2000) });

    phase('HTTP/2 over TLS: 1 MiB blob GET (h2load -n 2000 -c 32 -m 10)');
    my $b = interleaved([qw(A B)], undef,
        sub { h2_run(blob_url($_[0], $c->{blob1m}, tls => 1), 2000, 200) });

    return (
        make_row('h2 (TLS) manifest GET, 32 conns x 10 streams', 'req/s',
                 $m, 'rps'),
        make_row('h2 (TLS) blob GET 1 MiB, 32 conns x 10 streams', 'req/s',
                 $b, 'rps'),
    );
}

sub h2_run {
    my ($url, $n, $warm) = @_;

    my %o = (conns => 32, streams => 10, headers => [$ACCEPT]);
    Bench::Load::h2load($url, %o, n => $warm) if warm_up_now();
    return Bench::Load::h2load($url, %o, n => $n);
}

# ---- pushes ----

# sequential write speed of the store's disk: dd of 1 GiB, fdatasync
sub disk_write {
    my $f = "$ST{store}/dd.tmp";
    my ($rc, $out, $err) = run_cmd(['dd', 'if=/dev/zero', "of=$f", 'bs=16M',
                                    'count=64', 'conv=fdatasync']);
    unlink $f;
    settle();

    my ($bytes, $secs) = $err =~ /^(\d+) bytes .* copied, ([\d.]+) s/m;
    return { error => "dd: $err" } if $rc || !$secs;
    return { mbs => $bytes / $secs / $MB };
}

# SHA-256 on one core: openssl speed, 16 KiB blocks
sub sha256_speed {
    my ($rc, $out, $err) = run_cmd(['openssl', 'speed', '-evp', 'sha256',
                                    '-bytes', 16384, '-seconds', 3]);
    my ($k) = $out =~ /^sha256\s+([\d.]+)k\s*$/mi;
    die "openssl speed: $out$err\n" unless $k;
    return $k * 1000 / $MB;
}

# Writes back everything dirty on the store's file system (sync -f), so
# that a measurement does not pay for the writeback of what came before:
# distribution's pushes (it does not fsync), copies of the 1 GiB file, and
# deletes (where the file system discards freed blocks, the next journal
# commit, and so the next fsync(), waits for that).
sub settle {
    my ($rc, $out, $err) = run_cmd(['sync', '-f', $ST{store}], timeout => 600);
    die "sync -f $ST{store}: $err\n" if $rc;
}

# removes pushed blobs' bytes from the store (disk space), and settles
sub drop_blobs {
    my (@hex) = @_;

    for my $hex (@hex) {
        my $path = $ST{c}{store}->blob_path($hex);
        unlink $path;
        rmdir dirname($path);
    }

    settle();
}

sub push_once {
    my ($s, $kind, $round) = @_;

    my $big = $ST{big};
    my $label = "$kind-$s-$round";
    my ($r, $hex);

    settle();

    if ($kind eq 'mono') {
        $hex = $big->variant($big->base, $label);
        $r = Bench::Push::monolithic(url($s, ''), 'bench/push', $big->base,
                                     $hex);
    } else {
        # PATCHes on one kept-alive connection, as clients push: one curl
        # process a chunk measured curl's start-up (30 ms each), not this
        my $stream = $big->concat(1, $label);
        $hex = $stream->{hex};
        settle();
        $r = Bench::Push::chunked_stream(url($s, ''), 'bench/push', $stream,
                                         chunk => 16 * 1024 * 1024);
    }

    $r->{error} ||= verify_pushed($hex);
    drop_blobs($hex);
    $r->{mbs} = $r->{bytes} / $r->{secs} / $MB unless $r->{error};
    return $r;
}

sub verify_pushed {
    my ($hex) = @_;
    my $size = -s $ST{c}{store}->blob_path($hex) // 0;
    return $size == $ST{big}->size ? '' : "stored blob has $size bytes";
}

sub push_rows {
    phase('push limits: openssl speed -evp sha256 (3 s)');
    $ST{sha_mbs} = sha256_speed();

    # the disk of this VM writes anywhere from 250 to 900 MB/s from one
    # minute to the next: each push row has the limit dd found beside it

    phase('push 1 GiB monolithic (POST + PUT -T), interleaved with dd');
    my (@mono_disk, @chunk_disk);
    my $mono = interleaved([qw(A C)], undef, sub {
        push @mono_disk, disk_write() if $_[0] eq 'A';
        return push_once($_[0], 'mono', $_[1]);
    });

    phase('push 1 GiB in 16 MiB PATCH chunks (one connection), '
          . 'interleaved with dd');
    my $chunked = interleaved([qw(A C)], undef, sub {
        push @chunk_disk, disk_write() if $_[0] eq 'A';
        return push_once($_[0], 'chunk', $_[1]);
    });

    $ST{disk_mbs} = median(map { $_->{mbs} } @mono_disk, @chunk_disk);
    $ST{limit} = push_limit(@mono_disk, @chunk_disk);

    phase('1,000 pushes of 4 KiB blobs (POST + PUT, keep-alive)');
    my $small = interleaved([qw(A C)], undef, sub {
        settle();
        Bench::Push::small_pushes(url($_[0], ''), "bench/small-$_[1]",
                                  1000, 4096, "small $_[0] $_[1] $$");
    });

    return (
        make_row('push 1 GiB monolithic', 'MB/s', $mono, 'mbs',
                 target => all_of(push_limit_target(push_limit(@mono_disk)),
                                  at_least_times('C', 2))),
        make_row('push 1 GiB, 16 MiB PATCH chunks, one connection', 'MB/s',
                 $chunked, 'mbs',
                 target => all_of(push_limit_target(push_limit(@chunk_disk)),
                                  at_least_times('C', 2))),
        make_row('push 1,000 blobs of 4 KiB', 'blobs/s', $small,
                 sub { $_[0]{count} / $_[0]{secs} },
                 target => at_least_times('C', 2)),
    );
}

# min(SHA-256 on one core, the median of these dd runs)
sub push_limit {
    my $disk = median(map { $_->{mbs} } grep { !$_->{error} } @_);

    return defined $disk && $disk < $ST{sha_mbs} ? $disk : $ST{sha_mbs};
}

sub push_limit_target {
    my ($limit) = @_;
    return {
        text => sprintf('A ≥ 0.8 × limit (%.0f MB/s)', $limit),
        check => sub {
            defined $_[0]{A} && $_[0]{A} ne 'n/a'
                ? ($_[0]{A} >= 0.8 * $limit ? 1 : 0) : undef;
        },
    };
}

# ---- fairness: GET p99 while big pushes run ----

sub fairness_rows {
    my $blob = $ST{c}{blob1m};
    my (%idle, %busy, %pushed);

    for my $s (qw(A C)) {
        phase("fairness on $s: p99 of 1 MiB GETs idle (wrk, 8 conns, 5 s)");
        my @files = map { fair_file($s, $_) } 1 .. 4;
        settle();
        $idle{$s} = [ wrk_fair($s) ];

        phase("fairness on $s: the same while 4 clients push 1 GiB each");
        ($busy{$s}, $pushed{$s}) = busy_p99($s, @files);
        $busy{$s} = [ $busy{$s} ];
    }

    $ST{fair_push} = \%pushed;

    my $ratio = {};
    for my $s (qw(A C)) {
        my ($i, $b) = ($idle{$s}[0], $busy{$s}[0]);
        $ratio->{$s} = [ $i->{error} || $b->{error}
            ? { error => $i->{error} || $b->{error} }
            : { ratio => $b->{p99_ms} / $i->{p99_ms} } ];
    }

    my $row = make_row('p99 under push / p99 idle', 'x', $ratio, 'ratio',
                       fmt => '%.2f', target => {
                           text => 'A ≤ 2',
                           check => sub { defined $_[0]{A}
                                          ? ($_[0]{A} <= 2 ? 1 : 0) : undef },
                       });
    @$row{qw(ratio_B ratio_C)} = ('n/a', '—');

    return (
        make_row('p99 blob GET 1 MiB, 8 conns, idle', 'ms', \%idle, 'p99_ms',
                 fmt => '%.2f'),
        make_row('p99 blob GET 1 MiB, 8 conns, during 4 x 1 GiB pushes', 'ms',
                 \%busy, 'p99_ms', fmt => '%.2f'),
        $row,
    );
}

sub wrk_fair {
    my ($s) = @_;
    return wrk_run(blob_url($s, $ST{c}{blob1m}), conns => 8, secs => 5,
                   threads => 2);
}

# 4 background clients push distinct 1 GiB blobs, again and again until
# the GETs are over; wrk warms up 1 s after they start and measures 5 s
sub busy_p99 {
    my ($s, @files) = @_;

    settle();
    my $t0 = time;
    my $until = $t0 + 1 + 1 + 5;
    my @jobs = map { fair_pusher($s, $_, $until) } @files;
    sleep 1;

    my $r = wrk_run(blob_url($s, $ST{c}{blob1m}), conns => 8, secs => 5);

    my $early = grep { !running($_->{pid}) } @jobs;
    my @bad = grep { reap($_->{pid}, 600) != 0 } @jobs;
    my $secs = time - $t0;
    my $pushes = 0;
    $pushes += slurp($_->{result}) || 0 for @jobs;

    drop_blobs(map { $_->{hex} } @jobs);

    $r->{error} ||= scalar(@bad) . ' of the 4 push clients failed' if @bad;
    $r->{error} ||= "$early of the 4 push clients stopped before the GETs did"
        if $early;

    return ($r, { secs => $secs, pushes => $pushes,
                  mbs => $pushes * $ST{big}->size / $secs / $MB });
}

# the 1 GiB file client $i pushes: a variant of its own
sub fair_file {
    my ($s, $i) = @_;

    my $file = "$ST{tmp}/work/fair.$i";
    my $hex = $ST{big}->variant($file, "fair-$s-$i");

    return { file => $file, hex => $hex, result => "$file.pushes" };
}

# a child pushing $f->{file} until the time $until has passed (at least
# once); writes how many pushes it made to $f->{result}
sub fair_pusher {
    my ($s, $f, $until) = @_;

    my $base = url($s, '');
    unlink $f->{result};

    my $pid = spawn_code(sub {
        my $n = 0;

        do {
            my $r = Bench::Push::monolithic($base, 'bench/fair', $f->{file},
                                            $f->{hex});
            die "push to $s: $r->{error}" if $r->{error};
            spew($f->{result}, ++$n);
        } while (time < $until);

        return 1;
    });

    return { %$f, pid => $pid };
}

# ---- latency: manifest GET p99 under listings and pushes; the final PUT
# of a 4 GiB chunked upload ----

sub latency_rows {
    return (manifest_latency_rows(), final_put_rows());
}

sub ratio_row {
    my ($name, $idle, $busy) = @_;

    my $ratio = {};
    for my $s (qw(A C)) {
        my ($i, $b) = ($idle->{$s}[0], $busy->{$s}[0]);
        $ratio->{$s} = [ $i->{error} || $b->{error}
            ? { error => $i->{error} || $b->{error} }
            : { ratio => $b->{p99_ms} / $i->{p99_ms} } ];
    }

    my $row = make_row($name, 'x', $ratio, 'ratio', fmt => '%.2f', target => {
        text => 'A ≤ 2',
        check => sub { defined $_[0]{A} ? ($_[0]{A} <= 2 ? 1 : 0) : undef },
    });
    @$row{qw(ratio_B ratio_C)} = ('n/a', '—');

    return $row;
}

# wrk -c 8 for 5 s on a manifest GET by tag, on each server idle and then
# under load: on the second store's, while 2 clients page through its
# 100,000-repository catalog; on the main store's (pushes fsync on the
# disk there, as in every push line), while 2 clients push small images
sub manifest_latency_rows {
    my $bc = $ST{bc};
    my (%idle_big, %cat, %idle, %push);

    for my $s (qw(A C)) {
        my $url = big_url($s, "/v2/$bc->{repo}/manifests/latest");
        my $err = check_get($url, sub { $_[0]{content} eq $bc->{manifest}{bytes} },
                            $ACCEPT);
        if ($err) {
            $_->{$s} = [ { error => $err } ] for \%idle_big, \%cat;
        } else {
            phase("latency on $s (second store): p99 of manifest GETs by "
                  . 'tag idle (wrk, 8 conns, 5 s)');
            settle();
            $idle_big{$s} = [ wrk_run($url, conns => 8, secs => 5,
                                      headers => [$ACCEPT]) ];

            phase("latency on $s (second store): the same while 2 clients "
                  . 'page through the catalog (n=1000)');
            ($cat{$s}[0], $ST{bg_work}{catalog}{$s})
                = busy_manifest_p99($s, $url, \&catalog_pager);
        }

        $url = manifest_url($s, 'latest');
        $err = check_manifest($s, 'latest');
        if ($err) {
            $_->{$s} = [ { error => $err } ] for \%idle, \%push;
            next;
        }

        phase("latency on $s: p99 of manifest GETs by tag idle (wrk, 8 "
              . 'conns, 5 s)');
        settle();
        $idle{$s} = [ wrk_run($url, conns => 8, secs => 5,
                              headers => [$ACCEPT]) ];

        phase("latency on $s: the same while 2 clients push small images");
        ($push{$s}[0], $ST{bg_work}{push}{$s})
            = busy_manifest_p99($s, $url, \&image_pusher);
    }

    my $small = length $bc->{manifest}{bytes};
    my $size = length $ST{c}{manifest}{bytes};
    my $count = commify(scalar @{ $bc->{repos} });

    return (
        make_row("p99 manifest GET by tag ($small B), 8 conns, idle, "
                 . "$count repositories", 'ms', \%idle_big, 'p99_ms',
                 fmt => '%.2f'),
        make_row('p99 manifest GET by tag, 8 conns, during 2 clients paging '
                 . 'the catalog', 'ms', \%cat, 'p99_ms', fmt => '%.2f'),
        ratio_row('p99 during catalog paging / p99 idle', \%idle_big, \%cat),
        make_row("p99 manifest GET by tag ($size B), 8 conns, idle", 'ms',
                 \%idle, 'p99_ms', fmt => '%.2f'),
        make_row('p99 manifest GET by tag, 8 conns, during 2 clients pushing '
                 . 'small images', 'ms', \%push, 'p99_ms', fmt => '%.2f'),
        ratio_row('p99 during small pushes / p99 idle', \%idle, \%push),
    );
}

# 2 background clients ($start->($s, $i, $done) each) working until the
# GETs are over ($done->() is true); wrk warms up 1 s after they start and
# measures 5 s.  Returns the wrk result (failed when a client failed or
# stopped early) and { secs, work => [what each client did] }.
sub busy_manifest_p99 {
    my ($s, $url, $start) = @_;

    my $stop = "$ST{tmp}/work/background.stop";
    unlink $stop;

    settle();
    my $t0 = time;
    my $deadline = $t0 + 120;
    my $done = sub { -e $stop || time > $deadline };
    my @jobs = map { $start->($s, $_, $done) } 1 .. 2;
    sleep 1;

    my $r = wrk_run($url, conns => 8, secs => 5, headers => [$ACCEPT]);

    my $early = grep { !running($_->{pid}) } @jobs;
    spew($stop, '');
    my @bad = grep { reap($_->{pid}, 120) != 0 } @jobs;
    my $secs = time - $t0;

    $r->{error} ||= scalar(@bad) . ' of the 2 background clients failed'
        if @bad;
    $r->{error} ||= "$early of the 2 background clients stopped before the "
                    . 'GETs did' if $early;

    return ($r, { secs => $secs,
                  work => [ map { slurp($_->{result}) || '0 0' } @jobs ] });
}

# a child listing the second store's catalog in pages of 1,000 (following
# Link), whole listing after whole listing, until $done->(); then writes
# "pages listings" to its result file (only then: a file rewritten on
# ext4 is flushed when closed, which would throttle the client and write
# to the disk).  A whole listing with a name missing or extra fails it.
sub catalog_pager {
    my ($s, $i, $done) = @_;

    my $base = big_url($s, '');
    my $count = @{ $ST{bc}{repos} };
    my $result = "$ST{tmp}/work/pager.$s.$i";
    unlink $result;

    my $pid = spawn_code(sub {
        my $http = Bench::Push::http();
        my ($pages, $lists) = (0, 0);

        while (1) {
            my $path = '/v2/_catalog?n=1000';
            my $names = 0;

            while ($path) {
                my $r = $http->get($path =~ m{^https?://} ? $path
                                                          : "$base$path");
                die "GET $path on $s: $r->{status}\n"
                    unless $r->{status} == 200;

                # {"repositories":["a","b",...]}: names have no quotes
                $names += ($r->{content} =~ tr/"//) / 2 - 1;
                $pages++;
                if ($done->()) {
                    spew($result, "$pages $lists");
                    return 1;
                }

                ($path) = ($r->{headers}{link} // '')
                          =~ /<([^>]+)>;\s*rel="next"/;
            }

            die "a whole catalog of $s listed $names of $count\n"
                unless $names == $count;
            $lists++;
        }
    });

    return { pid => $pid, result => $result };
}

# a child pushing small images (config, layer, manifest with a new tag)
# into the main store's bench/pull until $done->(); then writes "images 0"
sub image_pusher {
    my ($s, $i, $done) = @_;

    my $base = url($s, '');
    my $result = "$ST{tmp}/work/pusher.$s.$i";
    unlink $result;

    my $pid = spawn_code(sub {
        my $http = Bench::Push::http();
        my $n = 0;

        do {
            $n++;
            Bench::Push::small_image($http, $base, $ST{c}{repo},
                                     "push-$s-$i-$n", "$s $i $n $$");
        } until $done->();

        spew($result, "$n 0");
        return 1;
    });

    return { pid => $pid, result => $result };
}

# The final PUT of a 4 GiB upload, POST + 64 PATCHes of 64 MiB + PUT
# ?digest= on one connection (Bench::Push::chunked_stream): A in every
# round, C in the first (one push of 4 GiB takes it ~25 s)
sub final_put_rows {
    phase('4 GiB chunked push (64 x 64 MiB PATCH, one connection): final '
          . 'PUT latency');

    my %res;
    for my $round (1 .. $ST{opt}{rounds}) {
        local $ST{round} = $round;
        for my $s (qw(A C)) {
            next if $s eq 'C' && $round > 1;
            push @{ $res{$s} }, push_4gib($s, $round);
        }
    }

    return (
        make_row('final PUT latency, 4 GiB upload in 64 MiB PATCH chunks '
                 . '(one connection)', 's', \%res, 'final_secs',
                 fmt => '%.3f', target => at_most(1, 's')),
        make_row('push 4 GiB, 64 MiB PATCH chunks, one connection', 'MB/s',
                 \%res, 'mbs'),
    );
}

sub push_4gib {
    my ($s, $round) = @_;

    my $free = free_gib($ST{store});
    return { error => sprintf('%.1f GiB free in the store, 5 GiB needed',
                              $free) } if $free < 5;

    my $stream = $ST{big}->concat(4, "4g-$s-$round");
    settle();

    my $r = Bench::Push::chunked_stream(url($s, ''), 'bench/push', $stream,
                                        chunk => 64 * $MIB);

    my $size = -s $ST{c}{store}->blob_path($stream->{hex}) // 0;
    $r->{error} ||= "stored blob has $size bytes, not $stream->{size}"
        unless $size == $stream->{size};
    drop_blobs($stream->{hex});

    $r->{mbs} = $r->{bytes} / $r->{secs} / $MB unless $r->{error};
    return $r;
}

# ---- memory ----

# VmRSS of A's workers, KiB: { sum, max, pids }
sub worker_rss {
    my @pids = Bench::Servers::worker_pids($ST{srv}{A}{pid});
    my @kib = map { (slurp("/proc/$_/status") =~ /^VmRSS:\s+(\d+)/m)[0] // 0 }
              @pids;

    my ($max) = sort { $b <=> $a } @kib;
    my $sum = 0;
    $sum += $_ for @kib;

    return { sum => $sum, max => $max // 0, kib => \@kib };
}

sub memory_rows {
    phase('memory: A workers\' RSS around 2 x 1 GiB pushed + 2 x 1 GiB '
             . 'pulled');

    my $before = worker_rss();
    my $err = move_4gib();
    my $after = worker_rss();

    $ST{rss} = { before => $before, after => $after };

    my $growth = ($after->{sum} - $before->{sum}) / 1024;
    my $row = { name => 'A workers\' RSS growth after moving 4 GiB (sum '
                        . 'over workers)',
                unit => 'MiB', A => $err ? undef : $growth, B => 'n/a',
                C => 'n/a', fmt => '%.2f', error => { A => $err },
                target => { text => 'A ≤ 4 MiB', check => sub {
                    defined $_[0]{A} ? ($_[0]{A} <= 4 ? 1 : 0) : undef } } };

    return ($row);
}

# pushes 1 GiB monolithic and 1 GiB chunked to A and pulls both back;
# '' or what failed
sub move_4gib {
    my @hex;

    settle();

    for my $kind (qw(mono chunk)) {
        my $big = $ST{big};
        my $hex = $kind eq 'mono' ? $big->variant($big->base, "mem-$kind")
                                  : $big->chunks_variant("mem-$kind");
        my $r = $kind eq 'mono'
            ? Bench::Push::monolithic(url('A', ''), 'bench/mem', $big->base,
                                      $hex)
            : Bench::Push::chunked(url('A', ''), 'bench/mem',
                                   [$big->chunk_files], $hex);
        return "push $kind: $r->{error}" if $r->{error};
        push @hex, $hex;
    }

    for my $hex (@hex) {
        my $r = Bench::Load::curl_get(url('A', "/v2/bench/mem/blobs/sha256:$hex"),
                                      bytes => $ST{big}->size);
        return "pull: $r->{error}" if $r->{error};
    }

    drop_blobs(@hex);

    return '';
}

# ---- memory per open upload: 1,000 PATCHes held open at once ----

# (a constant: main() runs before the file's variables are assigned)
use constant OPEN_UPLOADS => 1000;

sub uploads_open_rows {
    phase("uploads_open: RSS of A's workers and of C before and with "
          . OPEN_UPLOADS . " PATCHes held open (chunked, 32 KiB sent)");

    my %per;
    my %err;

    for my $s (qw(A C)) {
        my $r = eval { hold_uploads($s) };
        $err{$s} = $@ ? "$@" : '';
        $per{$s} = $r;
        say_step(sprintf('%s: %s', $s, $r ? sprintf('%.0f -> %.0f KiB, '
                         . '%.1f KiB per upload', $r->{before}, $r->{with},
                         $r->{per}) : "failed: $err{$s}"));
    }

    return ({ name => "RSS per open upload (" . OPEN_UPLOADS . " at once, "
                      . 'chunked PATCH, A: sum over workers)',
              unit => 'KiB', fmt => '%.1f', B => 'n/a',
              A => $per{A} ? $per{A}{per} : undef,
              C => $per{C} ? $per{C}{per} : undef,
              error => { A => $err{A}, C => $err{C} } });
}

# KiB of resident memory of A's workers (sum) or of C's process
sub server_rss_kib {
    my ($s) = @_;
    return worker_rss()->{sum} if $s eq 'A';
    return (slurp("/proc/$ST{srv}{C}{pid}/status") =~ /^VmRSS:\s+(\d+)/m)[0]
           // die "no RSS of C\n";
}

# opens OPEN_UPLOADS sessions, then a connection for each whose PATCH
# sends its headers and a first chunk of 32 KiB and waits; the RSS
# before and with them, per upload (the connections are then closed:
# abandoned sessions, which the temp dir's removal takes)
sub hold_uploads {
    my ($s) = @_;

    my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
    my ($port) = url($s, '') =~ m{:(\d+)$};
    my (@locs, @socks);

    for (1 .. OPEN_UPLOADS) {
        my $r = $http->post(url($s, '/v2/bench/open/blobs/uploads/'));
        die "POST: $r->{status}\n" unless $r->{status} == 202;
        push @locs, $r->{headers}{location} =~ s{^https?://[^/]+}{}r;
    }

    sleep 2;
    my $before = server_rss_kib($s);
    my $chunk = sprintf("%x\r\n", 32768) . ('u' x 32768) . "\r\n";

    for my $loc (@locs) {
        my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp')
            or die "connect: $!\n";
        $c->autoflush(1);
        print $c "PATCH $loc HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 . "Content-Type: application/octet-stream\r\n"
                 . "Transfer-Encoding: chunked\r\n\r\n" . $chunk;
        push @socks, $c;
    }

    sleep 3;
    my $with = server_rss_kib($s);
    close $_ for @socks;
    sleep 1;

    return { before => $before, with => $with,
             per => ($with - $before) / OPEN_UPLOADS };
}

# ---- garbage collection: the module's gc, online, against docker-registry
# garbage-collect, offline, each on a fresh copy of one store (Bench::Gc) ----

# the two ways of collecting, each with what must be left (Bench::Gc)
sub gc_modes {
    return (
        { name => 'gc', query => 'grace=0', c_args => [], keep => 'all',
          what => 'without delete_untagged' },
        { name => 'gc delete_untagged', query => 'grace=0&delete_untagged=1',
          c_args => ['--delete-untagged'], keep => 'untagged',
          what => 'with delete_untagged (C: --delete-untagged)' },
    );
}

sub gc_rows {
    phase('gc: the model of a store of 100,000 blobs and 10,000 manifests');

    my $g = $ST{gc} = { model => Bench::Gc::model(), dir => "$ST{tmp}/gc",
                        n => 0, skip => '', reports => {}, logs => [] };
    make_path($g->{dir});
    ($g->{crt}, $g->{key}) = Bench::Servers::make_cert($g->{dir});

    # without the admin location A is not measured (gc_job: nor when it
    # answers 404 to POST gc); C still is
    $g->{skip} = 'not measured: the built module has no registry_admin '
                 . 'directive (no admin location, no gc job)'
        unless Bench::Servers::admin_known(
                   "$REPO/build/ngx_http_registry_module.so");

    my @rows;
    for my $mode (gc_modes()) {
        phase("gc $mode->{what}: a fresh store for each run; A: POST "
              . '/_registry/gc, GET jobs/<id> every 10 ms; C: '
              . 'docker-registry garbage-collect');
        my $res = interleaved([qw(A C)], undef,
                              sub { gc_once($_[0], $mode) });
        push @rows, gc_mode_rows($mode, $res);
    }

    return (@rows, gc_serving_rows());
}

# a fresh copy of the gc store: written again from the model (22 s on the
# 2-core VM; `cp -a` of a written one took 56 s), on a tmpfs of its own
# when root (removed by one umount); returns its directory, whose store
# is DIR/store
sub gc_copy {
    my $g = $ST{gc};

    my $dir = "$g->{dir}/store-" . ++$g->{n};
    make_path($dir);

    if ($> == 0 && system('mount', '-t', 'tmpfs', '-o',
                          'size=4g,nr_inodes=2m', 'tmpfs', $dir) == 0) {
        $ST{gc_mounts}{$dir} = 1;
        $g->{where} = 'a tmpfs of its own';
    } else {
        say_step("no tmpfs for the gc store (not root?): $dir is on the "
                 . 'temp dir\'s file system, and removing it takes long');
        $g->{where} = 'the temp dir\'s file system';
    }

    my $t0 = time;
    Bench::Gc::write_store($g->{model}, "$dir/store");
    push @{ $g->{write_secs} }, time - $t0;

    return $dir;
}

sub gc_drop {
    my ($dir) = @_;

    if (delete $ST{gc_mounts}{$dir}) {
        system('umount', $dir) == 0 or system('umount', '-l', $dir);
    }
    system('rm', '-rf', '--', $dir);
}

# one collection by $s on a fresh copy: { secs, freed_secs, left } or
# { error }; the blobs left must be exactly those the model keeps.  The
# module's gc moves unreachable blobs to tombstones and deletes those in
# a later run (store_gc.c): its bytes are freed by a second run, which
# must leave no tombstone.  Distribution deletes them in its one run.
sub gc_once {
    my ($s, $mode) = @_;

    my $g = $ST{gc};
    return { error => $g->{skip} } if $s eq 'A' && $g->{skip};

    my $dir = gc_copy();
    my $root = "$dir/store";
    my $check = sub {
        my $d = Bench::Gc::compare(Bench::Gc::blobs($root),
                                   $g->{model}{keep}{$mode->{keep}});
        return ($d->{left}, gc_mismatch($d));
    };
    my $r = eval { $s eq 'A' ? gc_run_a($dir, $mode, $check)
                             : gc_run_c($dir, $mode) }
            || { error => $@ || 'failed' };

    if (!$r->{error}) {
        ($r->{left}, $r->{error}) = $check->();
        my $tombs = $s eq 'A' ? gc_tombstones($root) : 0;
        $r->{error} ||= "$tombs files left in _ngx_tombstones by the second "
                        . 'run' if $tombs;
    }

    gc_drop($dir);
    return $r;
}

sub gc_tombstones {
    my ($root) = @_;
    return Bench::Gc::count_files("$root/docker/registry/v2/_ngx_tombstones");
}

sub gc_mismatch {
    my ($d) = @_;

    my @e;
    push @e, scalar(@{ $d->{missing} }) . ' blobs of live manifests are '
             . "gone (e.g. sha256:$d->{missing}[0])" if @{ $d->{missing} };
    push @e, scalar(@{ $d->{extra} }) . ' unreachable blobs are left (e.g. '
             . "sha256:$d->{extra}[0])" if @{ $d->{extra} };

    return @e ? "$d->{left} blobs left: " . join('; ', @e) : '';
}

# distribution's collector, offline (nothing serves the store meanwhile);
# its stdout (a line per blob marked and per blob deleted) goes to a file
sub gc_run_c {
    my ($dir, $mode) = @_;

    my $conf = "$dir/config.yml";
    spew($conf, Bench::Servers::distribution_conf("$dir/store", 0));

    my $t0 = time;
    my ($rc, $out, $err) = run_cmd(['docker-registry', 'garbage-collect',
                                    @{ $mode->{c_args} }, $conf],
                                   timeout => 1800);
    my $secs = time - $t0;

    return { error => "docker-registry garbage-collect exit $rc: "
                      . substr($err, 0, 300) } if $rc;

    ($ST{gc}{c_summary}{$mode->{name}}) = $out =~ /^(\d+ blobs marked, .*)$/m;
    return { secs => $secs, freed_secs => $secs };
}

# the module's collector: jobs of the admin location of an A started on
# the copy, each timed from the POST to the poll that sees it done.  The
# first run must leave exactly the blobs the model keeps ($check), the
# unreachable ones in tombstones; the second, 2.5 s later (tombstones go
# once older than the grace, 0 here, plus a second of slack for coarse
# file times), deletes them.
sub gc_run_a {
    my ($dir, $mode, $check) = @_;

    my $g = $ST{gc};
    my $srv = gc_start_a($dir);
    my $a = $srv->{A};
    my $r = gc_check_a($a) || gc_job($a->{url}, $mode->{query});
    $r = { error => $r } unless ref $r;

    my @reports = ($r->{report});
    if (!$r->{error}) {
        my ($left, $err) = $check->();
        $r->{error} = "after the first run: $err" if $err;
        push @{ $g->{tombs1}{$mode->{name}} }, gc_tombstones("$dir/store");
    }
    if (!$r->{error}) {
        sleep 2.5;
        my $second = gc_job($a->{url}, $mode->{query});
        push @reports, $second->{report};
        $r->{error} = "second run: $second->{error}" if $second->{error};
        $r->{freed_secs} = $r->{secs} + ($second->{secs} // 0);
    }

    $r->{error} ||= gc_check_a($a);
    gc_stop_a($srv);

    $g->{skip} = $r->{error} if $r->{skipped};
    $g->{reports}{$mode->{name}} ||= \@reports if $reports[-1];

    return $r;
}

sub gc_start_a {
    my ($dir) = @_;

    my $g = $ST{gc};
    my $module = "$REPO/build/ngx_http_registry_module.so";

    make_path("$dir/srv");
    return Bench::Servers::start_all(
        dir => "$dir/srv", store => "$dir/store", only => ['A'], admin => 1,
        workers => $ST{opt}{workers}, module => $module,
        cert => $g->{crt}, key => $g->{key});
}

# an A of the gc store stopped, what its error log says kept for the notes
sub gc_stop_a {
    my ($srv) = @_;

    Bench::Servers::stop_all($srv);
    my @bad = Bench::Servers::log_problems($srv->{A});
    push @{ $ST{gc}{logs} }, "- server A (gc store $srv->{A}{dir}) logged "
        . scalar(@bad) . " error/crit/alert lines, e.g.: $bad[0]" if @bad;
}

# '' when A serves the first repository's v0 manifest, byte for byte
sub gc_check_a {
    my ($a) = @_;

    my $man = $ST{gc}{model}{repos}[0]{manifests}[0];
    return check_get("$a->{url}/v2/$ST{gc}{model}{repos}[0]{name}/manifests/"
                     . $man->{tags}[0],
                     sub { $_[0]{content} eq $man->{bytes} }, $ACCEPT);
}

# POST <admin>/gc?$query, then GET the job every 10 ms until it has
# ended: { secs, report } when done, { error } otherwise; a 404 to the
# POST (a module without the gc job) is { skipped, error }
sub gc_job {
    my ($base, $query) = @_;

    my $http = Bench::Push::http();
    my $t0 = time;
    my $r = $http->request('POST', "$base/_registry/gc?$query",
                           { content => '' });

    return { skipped => 1, error => "not measured: A answered 404 to POST "
             . '/_registry/gc (no gc job in this build)' }
        if $r->{status} == 404;
    return { error => "POST /_registry/gc?$query: $r->{status} "
                      . substr($r->{content} // '', 0, 200) }
        unless $r->{status} == 202;

    my $id = json_of($r)->{id} // '';
    my $loc = $r->{headers}{location} || "/_registry/jobs/$id";
    $loc = "$base$loc" unless $loc =~ m{^https?://};

    # every 10 ms: a run of a second is measured to a hundredth of it
    while (time - $t0 < 1800) {
        sleep 0.01;
        my $p = $http->get($loc);
        return { error => "GET $loc: $p->{status}" } unless $p->{status} == 200;

        # the clock stops when the answer is in: decoding the report (JSON::PP,
        # 0.1 to 0.3 s for the 300 KB of the lists) is the bench's own time
        my $secs = time - $t0;
        my $job = json_of($p);
        my $state = $job->{state} // '';
        next if $state eq 'running';

        return { secs => $secs, report => $job->{report} || {} }
            if $state eq 'done';
        return { error => "gc job $id: state '$state': "
                          . substr($p->{content}, 0, 300) };
    }

    return { error => "gc job $id still running after 30 min" };
}

sub gc_mode_rows {
    my ($mode, $res) = @_;

    my $m = $ST{gc}{model};
    my $total = keys %{ $m->{all} };
    my $keep = keys %{ $m->{keep}{$mode->{keep}} };
    my $name = "$mode->{name}, " . commify($total) . ' blobs, '
             . commify($m->{manifests}) . ' manifests ('
             . commify($total - $keep) . ' to remove)';

    my $one = make_row("$name, one run (A: to tombstones)", 's', $res,
                       'secs', fmt => '%.2f');
    my $freed = make_row("$mode->{name}: until the bytes are freed (A: two "
                         . 'runs)', 's', $res, 'freed_secs', fmt => '%.2f');

    return (
        $one, gc_speedup_row("$mode->{name}, one run: C's time / A's", $res,
                             'secs'),
        $freed, gc_speedup_row("$mode->{name}, bytes freed: C's time / A's",
                               $res, 'freed_secs', 'no target'),
        make_row("$mode->{name}: blobs left (expected " . commify($keep)
                 . ')', 'blobs', $res, 'left'),
    );
}

# C's time over A's, round by round: each round runs both, one after
# the other, so that a ratio compares runs the machine gave the same
# conditions (distribution's own time moved from 5.2 to 8.8 s between two
# quiet hours of one morning)
# $untargeted: the bytes-freed ratio, for information: the issue's protocol
# deletes a tombstone only in a run a grace after the one that made it, so
# a GC set against distribution's one run is the one-run line
sub gc_speedup_row {
    my ($name, $res, $key, $untargeted) = @_;

    my %speed;
    my @c = @{ $res->{C} || [] };
    for my $i (0 .. $#{ $res->{A} || [] }) {
        my ($a, $c) = ($res->{A}[$i], $c[$i] || { error => 'C not measured' });
        my $err = $a->{error} || $c->{error};
        push @{ $speed{A} }, $err ? { error => $err }
                                  : { ratio => $c->{secs} / $a->{$key} };
    }

    my $row = make_row($name, 'x', \%speed, 'ratio', fmt => '%.1f',
                       $untargeted ? () : (target => {
        text => 'A ≥ 10 (10× faster)',
        check => sub { defined $_[0]{A} ? ($_[0]{A} >= 10 ? 1 : 0) : undef },
    }));
    @$row{qw(ratio_B ratio_C)} = ('n/a', '—');

    return $row;
}

# manifest GETs by tag on the gc store's A, idle, then while gc jobs run
# back to back (the first collects, the next ones mark and sweep the
# collected store again) until the GETs are over.  Once, like the other
# p99 lines.  Distribution's collector is offline: no C.
sub gc_serving_rows {
    my $g = $ST{gc};
    my (%idle, %busy);

    if (!$g->{skip}) {
        phase('gc: p99 of manifest GETs by tag on A, idle (wrk, 8 conns, '
              . '5 s)');
        my $dir = gc_copy();
        if (!eval { gc_serving($dir, \%idle, \%busy); 1 }) {
            my $err = $@;
            $_->{A} = [ { error => $err } ] for \%idle, \%busy;
        }
        gc_drop($dir);
    } else {
        $_->{A} = [ { error => $g->{skip} } ] for \%idle, \%busy;
    }

    my $ratio = { A => [ map {
        $_->[0]{error} || $_->[1]{error}
            ? { error => $_->[0]{error} || $_->[1]{error} }
            : { ratio => $_->[1]{p99_ms} / $_->[0]{p99_ms} }
    } [ $idle{A}[0], $busy{A}[0] ] ] };

    my $size = length $g->{model}{repos}[0]{manifests}[0]{bytes};
    my $row = make_row('p99 during gc / p99 idle', 'x', $ratio, 'ratio',
                       fmt => '%.2f', target => {
        text => 'A ≤ 2',
        check => sub { defined $_[0]{A} ? ($_[0]{A} <= 2 ? 1 : 0) : undef },
    });

    return (
        make_row("p99 manifest GET by tag ($size B), 8 conns, idle, gc store",
                 'ms', \%idle, 'p99_ms', fmt => '%.2f'),
        make_row('p99 manifest GET by tag, 8 conns, during gc jobs back to '
                 . 'back', 'ms', \%busy, 'p99_ms', fmt => '%.2f'),
        $row,
        make_row('manifest GET by tag, 8 conns, idle, gc store', 'req/s',
                 \%idle, 'rps'),
        make_row('manifest GET by tag, 8 conns, during gc jobs back to back',
                 'req/s', \%busy, 'rps'),
    );
}

sub gc_serving {
    my ($dir, $idle, $busy) = @_;

    my $g = $ST{gc};
    my $srv = gc_start_a($dir);
    my $a = $srv->{A};
    my $repo = $g->{model}{repos}[0];
    my $url = "$a->{url}/v2/$repo->{name}/manifests/"
            . $repo->{manifests}[0]{tags}[0];

    if (my $err = gc_check_a($a)) {
        $_->{A} = [ { error => $err } ] for $idle, $busy;
    } else {
        $idle->{A} = [ wrk_run($url, conns => 8, secs => 5,
                               headers => [$ACCEPT]) ];

        phase('gc: the same while gc jobs (grace=0) run back to back');
        my $r;
        ($r, $g->{serving}) = busy_gc_p99($a->{url}, $url);

        my $d = Bench::Gc::compare(Bench::Gc::blobs("$dir/store"),
                                   $g->{model}{keep}{all});
        $r->{error} ||= gc_mismatch($d) || gc_check_a($a);
        $busy->{A} = [ $r ];
    }

    gc_stop_a($srv);
}

# a child running gc jobs one after the other until the GETs are over;
# wrk warms up 1 s and measures 5 s once the first job has started.
# Returns the wrk result (failed when a job failed or the child stopped
# early) and { secs, jobs => [each job's time] }.
sub busy_gc_p99 {
    my ($base, $url) = @_;

    my $stop = "$ST{tmp}/work/gc.stop";
    my $result = "$ST{tmp}/work/gc.jobs";
    unlink $stop, $result;

    my $t0 = time;
    my $pid = spawn_code(sub {
        my @secs;
        do {
            my $r = gc_job($base, 'grace=0');
            die "gc job: $r->{error}\n" if $r->{error};
            push @secs, $r->{secs};
        } until -e $stop || time - $t0 > 120;
        spew($result, join(' ', @secs));
        return 1;
    });
    sleep 0.2;

    my $r = wrk_run($url, conns => 8, secs => 5, headers => [$ACCEPT]);

    my $early = !running($pid);
    spew($stop, '');
    my $rc = reap($pid, 600);

    $r->{error} ||= 'the gc client failed' if $rc;
    $r->{error} ||= 'the gc jobs stopped before the GETs did' if $early;

    return ($r, { secs => time - $t0,
                  jobs => [ split ' ', slurp($result) // '' ] });
}

# the numbers at the top of a gc job's report
sub gc_report_text {
    my ($rep) = @_;

    return '(none)' unless ref $rep eq 'HASH';
    my @nums = grep { !ref $rep->{$_} && ($rep->{$_} // '') =~ /^-?[\d.]+$/ }
               sort keys %$rep;
    return join(', ', map { "$_ $rep->{$_}" } @nums);
}

# what the gc lines ran on and what the collectors said
sub gc_text {
    my $g = $ST{gc};
    my $m = $g->{model};
    my $total = keys %{ $m->{all} };
    my @l;

    push @l, sprintf('GC lines: a store of %s blobs and %s manifests in %s '
                     . 'repositories (Bench::Gc: %s blobs unreachable; %s '
                     . 'more once the %s untagged manifests go), written '
                     . 'afresh for each run on %s (%.1f s, median of %d).',
                     commify($total), commify($m->{manifests}),
                     commify(scalar @{ $m->{repos} }),
                     commify($total - keys %{ $m->{keep}{all} }),
                     commify(keys(%{ $m->{keep}{all} })
                             - keys %{ $m->{keep}{untagged} }),
                     commify(scalar @{ $m->{repos} }), $g->{where} // '?',
                     median(@{ $g->{write_secs} || [] }) // 0,
                     scalar @{ $g->{write_secs} || [] });

    for my $mode (gc_modes()) {
        my $n = $mode->{name};
        my @runs = map { gc_report_text($_) } @{ $g->{reports}{$n} || [] };
        my $tombs = $g->{tombs1}{$n};
        push @l, "$n: A's reports (round 1): "
                 . (@runs ? join('; then ', @runs) : 'none')
                 . ($tombs ? '; files in _ngx_tombstones after a first run: '
                             . join(', ', @$tombs) : '')
                 . '; C said: ' . ($g->{c_summary}{$n} // 'nothing') . '.';
    }

    if (my $s = $g->{serving}) {
        my @j = @{ $s->{jobs} };
        push @l, sprintf('During the serving lines A ran %d gc job(s) one '
                         . 'after the other in %.1f s: the first, which '
                         . 'collected, took %.2f s under the GETs%s.',
                         scalar @j, $s->{secs}, $j[0] // 0, @j > 1
                         ? sprintf('; the others %.2f s (median)',
                                   median(@j[1 .. $#j])) : '');
    }

    return join("\n\n", @l);
}

# ---- report ----

sub report {
    my $opt = $ST{opt};

    my $text = Bench::Report::header(
        started => $ST{started}, tmp => $ST{tmp}, repo => $REPO,
        nginx => $Bench::Servers::NGINX, workers => $opt->{workers},
        rounds => $opt->{rounds}, secs => $opt->{secs},
        a_extra => $ST{srv}{A}{extra},
        second_store => $ST{bc} && commify(scalar @{ $ST{bc}{repos} })
            . " repositories, a repository of "
            . commify(scalar @{ $ST{bc}{tags} }) . " tags, on $ST{big_where}",
        load => "$ST{load_start} at the start, " . loadavg() . ' at the end',
        wall => time - $ST{started});

    $text .= "\n" . limits_text() . "\n" . Bench::Report::table($ST{rows});
    $text .= Bench::Report::notes($ST{rows}, extra_notes());
    $text .= Bench::Report::rounds_table($ST{rows});

    print "\n$text";
    save($text) if $opt->{save};
}

sub limits_text {
    my $f = $ST{fair_push} || {};
    my $rss = $ST{rss} || {};

    my @l = ('MB = 10^6 bytes, MiB = 2^20 bytes.', '');

    push @l, sprintf('Push limit: min(SHA-256 on one core %.0f MB/s, disk '
                     . 'write %.0f MB/s) = %.0f MB/s (openssl speed -evp '
                     . 'sha256 16 KiB; dd 1 GiB conv=fdatasync into the '
                     . 'store before each of A\'s pushes, median of all; '
                     . 'each push row\'s target uses the median of the dd '
                     . 'runs beside its own pushes).',
                     $ST{sha_mbs}, $ST{disk_mbs} // 0, $ST{limit}), ''
        if defined $ST{limit};

    push @l, sprintf('Fairness: the 4 push clients made %d pushes of 1 GiB '
                     . 'in %.1f s on A (%.0f MB/s together) and %d in %.1f s '
                     . 'on C (%.0f MB/s).',
                     map { $_ ? @$_{qw(pushes secs mbs)} : (0, 0, 0) }
                     @$f{qw(A C)}), ''
        if $f->{A};

    push @l, bg_work_text(), '' if $ST{bg_work};

    push @l, gc_text(), '' if $ST{gc};

    push @l, sprintf('A workers\' VmRSS (KiB): at start %s; before the 4 GiB '
                     . '%s; after %s.',
                     map { join(' + ', @{ $_->{kib} }) }
                     $ST{rss_start}, @$rss{qw(before after)}), ''
        if $rss->{after};

    return join("\n", @l);
}

# what the background clients of the latency lines did
sub bg_work_text {
    my $w = $ST{bg_work};
    my @parts;

    for my $s (qw(A C)) {
        my $c = $w->{catalog}{$s};
        my $p = $w->{push}{$s};
        my ($pages, $lists, $images) = (0, 0, 0);

        for (@{ $c ? $c->{work} : [] }) {
            my ($pg, $ls) = split ' ';
            $pages += $pg;
            $lists += $ls;
        }
        $images += (split ' ')[0] for @{ $p ? $p->{work} : [] };

        push @parts, sprintf('on %s the 2 catalog clients read %d pages of '
                             . '1,000 (%d whole listings) in %.1f s and the 2 '
                             . 'push clients pushed %d small images in %.1f s',
                             $s, $pages, $lists, $c ? $c->{secs} : 0, $images,
                             $p ? $p->{secs} : 0)
            if $c || $p;
    }

    return 'Latency lines: ' . join('; ', @parts) . '.';
}

sub extra_notes {
    my @notes = noise_notes();

    for my $set (['', $ST{srv}], [' (second store)', $ST{big_srv}]) {
        my ($what, $srvs) = @$set;
        for my $s (qw(A B C)) {
            my $srv = $srvs && $srvs->{$s} or next;
            my @bad = Bench::Servers::log_problems($srv);
            push @notes, "- server $s$what logged " . scalar(@bad)
                         . " error/crit/alert lines, e.g.: $bad[0]" if @bad;
        }
    }
    push @notes, @{ $ST{gc}{logs} } if $ST{gc};

    return @notes;
}

# bench/README.md shows the latest results between two marker lines
sub update_readme {
    my ($text) = @_;

    my $file = "$BENCH/README.md";
    my $readme = slurp($file);
    my $begin = "<!-- latest results: written by bench/run.pl -->\n";
    my $end = "<!-- end of latest results -->\n";

    $text =~ s/^# /### /m;
    $text =~ s/^## /#### /mg;

    return unless $readme =~ s/\Q$begin\E.*?\Q$end\E/$begin\n$text\n$end/s;
    spew($file, $readme);
}

# the steps during which other processes used more than 5 % of a core
sub noise_notes {
    my ($cpu, $wall) = (0, 0);
    my @busy;

    for my $n (@{ $ST{noise} || [] }) {
        $cpu += $n->{cpu};
        $wall += $n->{wall};
        push @busy, sprintf('%s (%.0f %%)', $n->{name},
                            100 * $n->{cpu} / $n->{wall})
            if $n->{wall} > 0 && $n->{cpu} / $n->{wall} > 0.05;
    }

    my $line = sprintf('- other processes on the machine used %.1f CPU-s '
                       . 'during the %.0f s of measurements (%.1f %% of one '
                       . 'core)', $cpu, $wall, $wall ? 100 * $cpu / $wall : 0);
    $line .= @busy ? '; steps disturbed by more than 5 % of a core: '
                     . join(', ', @busy) : '; no step disturbed';

    return ($line);
}

sub save {
    my ($text) = @_;

    my $dir = "$BENCH/results";
    make_path($dir);

    my $host = (POSIX::uname())[1] || 'host';
    my $name = strftime('%Y-%m-%dT%H%MZ', gmtime($ST{started}))
             . "-$host.md";

    spew("$dir/$name", $text);
    spew("$dir/latest.md", $text);
    update_readme($text);
    say_step("wrote bench/results/$name and bench/results/latest.md, "
             . 'updated bench/README.md');
}
