#!/usr/bin/perl

# One fetch of a mirrored blob across two nginx hosts sharing a store
# (issue 17): two mirrors (their own prefixes and ports, two workers
# each) on one registry_root, one upstream; the lease file
# _ngx_flights/<alg>/<hex> of the fetch's leader.
# - 12 clients split over both hosts on a cold 3 MiB blob the upstream
#   sends at 256 KiB/s (12 s, longer than the lease's 10 s staleness
#   bound: the leader refreshes it): one upstream GET, every client the
#   right bytes, and each its first 256 KiB before the upstream was done
#   (the other host's clients read the leader's growing temporary file);
#   no lease or temporary file left;
# - under strace, the leader writes the blob to its temporary file in
#   the pool's threads only, and the other host (sendfile on, so that its
#   own output reads nothing) reads that file to hash it in the pool's
#   threads only, never in a worker's event loop;
# - a lease of a dead host (a foreign host, an mtime a minute old), and
#   one of this host whose pid is gone (mtime fresh): taken over at once
#   (well within the bound), one upstream GET, the right bytes;
# - a live lease of another host (its mtime kept fresh by the test): the
#   clients of both hosts wait and nothing is fetched; the "other host"
#   publishes the blob and drops the lease: all are served it, still no
#   upstream GET; one dropped without a blob: fetched once by the
#   clients' hosts;
# - other bytes than the digest's: the clients of both hosts answered
#   200, none has a whole body, one upstream GET, nothing published, no
#   lease left;
# - a byte of the leader's temporary file wrong for a moment, as another
#   host's writes may look on a network file system, when the other
#   host's follower reads it: its client never gets the last byte (the
#   follower hashed what it read), the leader's gets the right bytes,
#   the right blob is published;
# - the leader's worker killed (kill -9) mid-fetch: its lease names a dead
#   pid of this machine, so the other host's follower ends at once, short
#   of the last byte like every client; the next pull fetches the blob.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use File::Basename qw(dirname);
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use POSIX ();
use Sys::Hostname qw(hostname);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;
use MirrorTest;

my $FIRST = $MirrorTest::FIRST;
my $CLIENTS = 12;

my $dir = tempdir('mirror-hosts-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});
my $root = tempdir('mirror-hosts-store-XXXXXXXX', TMPDIR => 1,
                   CLEANUP => !$ENV{REGTEST_LEAVE});
my $v2 = "$root/docker/registry/v2";

# $size bytes nobody has pulled before
sub blob_bytes {
    my ($size) = @_;
    my $b = '';
    $b .= pack('N', $_) x 1024 for 1 .. $size / 4096;
    substr($b, 0, 16) = sprintf('%016d', int rand 1e15);
    return $b;
}

my $SLOW = 3 * 1024 * 1024;
my $EVIL = 2 * 1024 * 1024;
my %bytes = map { $_ => blob_bytes(256 * 1024) } qw(dead killed live vanish);
$bytes{traced} = blob_bytes(1024 * 1024);
$bytes{slow} = blob_bytes($SLOW);
$bytes{doomed} = blob_bytes(2 * 1024 * 1024);
$bytes{tampered} = blob_bytes(1024 * 1024);
my $good = blob_bytes($EVIL);       # what the upstream should send for x/evil
RegTest::spew("$dir/evil", 'x' x $EVIL);

my $up = RegTest->new(
    http_extra => <<'EOF',
    map $uri $up_rate {
        ~^/v2/lib/(slow|doomed|tampered|traced)/  256k;
        default          0;
    }
EOF
    location_extra => 'limit_rate $up_rate;',
    server_extra => <<"EOF");
        location ^~ /v2/x/evil/ {
            limit_rate 1m;
            default_type application/octet-stream;
            root $dir;
            try_files /evil =404;
        }
EOF

my %digest = map { $_ => $up->push_blob("lib/$_", $bytes{$_}) }
             grep { $_ ne 'live' } keys %bytes;
$digest{live} = RegTest::digest($bytes{live});     # upstream has it not
my $gd = RegTest::digest($good);

my $url = 'http://127.0.0.1:' . $up->port;
my %opts = (workers => 2, root => $root,
            expect_in_log => qr/exited on signal 9/);
my @hosts = map { MirrorTest::mirror($url, opts => { %opts, %$_ }) }
            {}, { http_extra => 'sendfile on;' };

sub lease_file {
    my ($digest) = @_;
    my ($alg, $hex) = split /:/, $digest;
    return "$v2/_ngx_flights/$alg/$hex";
}

sub upstream_gets {
    my ($path) = @_;
    return MirrorTest::upstream_hits($up, qr{"GET /v2/$path/blobs/});
}

sub errors { join '', map { $_->error_log } @hosts }

# a client of host $h in a child (MirrorTest::stream_client()): its pid
sub client {
    my ($h, $path, $out, $probe) = @_;
    return MirrorTest::stream_client($h->port, $path, $out, $probe);
}

# $n clients of blob $name, alternately on either host; their results
sub clients {
    my ($name, $digest, $n, $probe, $before_wait) = @_;
    my $path = "/v2/up/$name/blobs/$digest";
    (my $tag = $name) =~ s{/}{-}g;

    my @pids = map { client($hosts[$_ % 2], $path, "$dir/$tag-$_", $probe) }
               0 .. $n - 1;
    $before_wait->() if $before_wait;
    waitpid($_, 0) for @pids;

    return MirrorTest::stream_results(map { "$dir/$tag-$_" } 0 .. $n - 1);
}

sub right {
    my ($bytes, @r) = @_;
    my $hex = sha256_hex($bytes);
    return scalar grep { $_->{status} == 200 && $_->{got} == length $bytes
                         && $_->{sha} eq $hex } @r;
}

sub write_lease {
    my ($digest, %lease) = @_;
    my $f = lease_file($digest);
    make_path(dirname($f));
    RegTest::spew($f, JSON::PP->new->encode({ id => '0123456789abcdef',
                                              temp => '', length => -1,
                                              %lease }));
    return $f;
}

# a child that keeps $file's mtime fresh, as a live leader does
sub refresher {
    my ($file) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        while (1) { utime(undef, undef, $file); sleep 1 }
    }
    return $pid;
}

sub temp_files { scalar(() = glob("$v2/_ngx_tmp/*")) }

# 12 clients over both hosts, one fetch longer than the staleness bound

{
    my $d = $digest{slow};
    my $probe = sub {
        return { upstream_done => upstream_gets('lib/slow'),
                 published => -e $hosts[0]->blob_path($d) ? 1 : 0 };
    };

    my $t0 = time;
    my @r = clients('lib/slow', $d, $CLIENTS, $probe);

    is(right($bytes{slow}, @r), $CLIENTS,
       "all $CLIENTS clients of both hosts got the right bytes")
        or diag(explain(\@r));
    cmp_ok(time - $t0, '>', 10, 'the fetch took longer than the lease\'s '
           . 'staleness bound');
    is(upstream_gets('lib/slow'), 1, 'one upstream fetch');
    is_deeply([ map { $_->{probe} } @r ],
              [ ({ upstream_done => 0, published => 0 }) x $CLIENTS ],
              "each had its first $FIRST bytes while the upstream was "
              . 'still sending, before the publish');
    ok(-f $hosts[0]->layer_link('up/lib/slow', $d), 'published and linked');
    ok(!-e lease_file($d), 'the lease is gone');
    is(temp_files(), 0, 'no temporary file left');
    unlike(errors(), qr/taken over/, 'the lease was never taken over');
}

# the leader writes and hashes in threads, the other host's followers
# read to hash in threads

# bytes of $call on $file in strace -f -y output $trace, by the event
# loops (%$main: the workers' own tids) and the pool's threads; a call two
# threads interleave comes in two lines
sub traced_bytes {
    my ($trace, $call, $file, $main) = @_;
    my (%by, %pending) = (loop => 0, threads => 0);
    for (split /\n/, RegTest::slurp($trace)) {
        my ($tid, $fd, $n);
        if (($tid, $fd) = /^(\d+)\s+$call\(\d+(<[^>]*>).*<unfinished/) {
            $pending{$tid} = $fd =~ $file;
            next;
        }
        if (($tid, $n) = /^(\d+)\s+<\.\.\. $call resumed>.*=\s+(\d+)\s*$/) {
            next unless delete $pending{$tid};
        } else {
            ($tid, $fd, $n) = /^(\d+)\s+$call\(\d+(<[^>]*>).*=\s+(\d+)\s*$/
                or next;
            next unless $fd =~ $file;
        }
        $by{ $main->{$tid} ? 'loop' : 'threads' } += $n;
    }
    return \%by;
}

{
    my $d = $digest{traced};
    my @leaders = $hosts[0]->pids_of_workers;
    my @followers = $hosts[1]->pids_of_workers;
    my $trace = "$dir/strace.out";
    my $strace = fork() // die "fork: $!";

    if ($strace == 0) {
        open STDERR, '>', '/dev/null';      # "Process N detached" lines
        exec '/usr/bin/strace', '-f', '-y', '-e', 'trace=pread64,pwrite64',
             '-o', $trace, map { ('-p', $_) } @leaders, @followers;
        exit 127;
    }

    sleep 1;    # strace attaches

    # host 1 leads: its client's lease is there before host 2 is asked
    my $path = "/v2/up/lib/traced/blobs/$d";
    my @pids = (client($hosts[0], $path, "$dir/traced-0"));
    my $t0 = time;
    sleep 0.05 until -e lease_file($d) || time - $t0 > 5;
    push @pids, map { client($hosts[1], $path, "$dir/traced-$_") } 1 .. 3;
    waitpid($_, 0) for @pids;

    kill 'INT', $strace;
    waitpid($strace, 0);

    my @r = MirrorTest::stream_results(map { "$dir/traced-$_" } 0 .. 3);
    is(right($bytes{traced}, @r), 4, 'traced: the right bytes on both hosts')
        or diag(explain(\@r));
    is(upstream_gets('lib/traced'), 1, 'traced: one upstream fetch');

  SKIP: {
        skip 'registry_thread_pool off: the event loops do it all', 4
            if ($ENV{REGTEST_THREADS} // '') eq 'off';

        # the leader's file: a temporary file, then the blob it was
        # published as (strace -y names a descriptor's file as it is now)
        my ($hex) = $d =~ /:(\w+)$/;
        my $file = qr{</[^>]*/(?:_ngx_tmp/\w+|\Q$hex\E/data)>};
        my %leader = map { $_ => 1 } @leaders;
        my %follower = map { $_ => 1 } @followers;
        my $read = traced_bytes($trace, 'pread64', $file, \%follower);
        my $written = traced_bytes($trace, 'pwrite64', $file, \%leader);

        # (the store's own temporary files, its links', are written in
        # threads too)
        cmp_ok($written->{threads}, '>=', length $bytes{traced},
               'the leader wrote the blob in threads');
        is($written->{loop}, 0, 'the leader wrote nothing in an event loop')
            or diag "event loops $written->{loop} bytes, "
                    . "threads $written->{threads} bytes";
        cmp_ok($read->{threads}, '>=', 3 * length $bytes{traced},
               'the other host\'s three followers hashed all they sent, '
               . 'in threads');
        is($read->{loop}, 0, 'no read of the leader\'s file in an event loop')
            or diag "event loops $read->{loop} bytes, "
                    . "threads $read->{threads} bytes";
    }
}

# a dead host's lease, and a dead worker's of this host

{
    my $d = $digest{dead};
    my $old = time - 60;
    my $f = write_lease($d, host => 'gone.example', pid => 4242);
    utime($old, $old, $f);

    my @r = clients('lib/dead', $d, 4);

    is(right($bytes{dead}, @r), 4, 'a dead host\'s lease: the right bytes');
    is(upstream_gets('lib/dead'), 1, 'fetched once');
    my $said = qr/blob \Q$d\E \(host "gone\.example", pid 4242\) is stale/;
    like(errors(), qr/$said, taken over/,
         'the stale lease was taken over');
    ok(!-e $f, 'and dropped once the blob was published');
}

{
    my $d = $digest{killed};
    my $pid = fork() // die "fork: $!";
    POSIX::_exit(0) if $pid == 0;
    waitpid($pid, 0);

    my $f = write_lease($d, host => lc hostname(), pid => $pid);

    my $t0 = time;
    my @r = clients('lib/killed', $d, 4);

    is(right($bytes{killed}, @r), 4,
       'a lease of this host whose pid is gone: the right bytes');
    cmp_ok(time - $t0, '<', 8, 'at once, not after the staleness bound');
    is(upstream_gets('lib/killed'), 1, 'fetched once');
    like(errors(), qr/blob \Q$d\E \(host "[^"]+", pid $pid\) is stale/,
         'taken over');
}

# a live lease of another host: waited for

{
    my $d = $digest{live};
    my $f = write_lease($d, host => 'other.example', pid => 1);
    my $keep = refresher($f);

    my (%seen, @r);
    @r = clients('lib/live', $d, 4, undef, sub {
        sleep 2;
        $seen{results} = scalar grep { -e "$dir/lib-live-$_" } 0 .. 3;
        $seen{gets} = upstream_gets('lib/live');
        $seen{temp} = temp_files();

        # the other host publishes the blob, then drops its lease
        my $blob = $hosts[0]->blob_path($d);
        make_path(dirname($blob));
        RegTest::spew("$blob.tmp", $bytes{live});
        rename("$blob.tmp", $blob) or die "rename: $!";
        kill 'KILL', $keep;
        waitpid($keep, 0);
        unlink $f;
    });

    is_deeply(\%seen, { results => 0, gets => 0, temp => 0 },
              'while another host holds the lease: nobody answered, '
              . 'nothing fetched');
    is(right($bytes{live}, @r), 4,
       'once it published the blob: the clients of both hosts got it');
    is(upstream_gets('lib/live'), 0, 'without an upstream fetch');
    ok(-f $hosts[0]->layer_link('up/lib/live', $d), 'linked');
}

{
    my $d = $digest{vanish};
    my $f = write_lease($d, host => 'other.example', pid => 1);
    my $keep = refresher($f);

    my @r = clients('lib/vanish', $d, 4, undef, sub {
        sleep 1;
        kill 'KILL', $keep;
        waitpid($keep, 0);
        unlink $f;
    });

    is(right($bytes{vanish}, @r), 4,
       'a lease dropped without a blob: the clients fetched it');
    is(upstream_gets('lib/vanish'), 1, 'once for both hosts');
    ok(!-e $f, 'no lease left');
}

# other bytes than the digest's

{
    my @r = clients('x/evil', $gd, $CLIENTS);

    is(scalar(grep { $_->{status} == 200 && $_->{length} == $EVIL } @r),
       $CLIENTS, "all $CLIENTS were answered 200 with the upstream's length")
        or diag(explain(\@r));
    is(scalar(grep { $_->{got} >= $FIRST } @r), $CLIENTS,
       "each had $FIRST bytes or more as they came");
    is(scalar(grep { $_->{got} >= $EVIL } @r), 0, 'none got a whole body');
    is(upstream_gets('x/evil'), 1,
       'one upstream fetch: the other host\'s clients did not fetch again');
    ok(!-e $hosts[0]->blob_path($gd), 'nothing published');
    ok(!-e lease_file($gd), 'no lease left');
    is(temp_files(), 0, 'no temporary file left');
    like(errors(), qr/followed on another host was not published/,
         'the other host\'s follower said why it ended');
}

# another host's file read before its bytes are there

# writes $byte at $at of $file
sub poke {
    my ($file, $at, $byte) = @_;
    open(my $fh, '+<', $file) or die "$file: $!";
    sysseek($fh, $at, 0);
    syswrite($fh, $byte);
    close $fh;
}

{
    my $d = $digest{tampered};
    my $path = "/v2/up/lib/tampered/blobs/$d";
    my $at = 256 * 1024;
    my $byte = substr($bytes{tampered}, $at, 1);

    my $leader = client($hosts[0], $path, "$dir/tampered-0");
    my $temp;
    for (1 .. 400) {
        my $lease = RegTest::slurp(lease_file($d)) // '';
        ($temp) = $lease =~ /"temp":"([^"]+)"/;
        last if $temp && -s "$v2/_ngx_tmp/$temp" >= $at + 65536;
        sleep 0.025;
    }
    ok($temp, 'the first host leads, its lease names the temporary file');
    $temp = "$v2/_ngx_tmp/" . ($temp // 'none');

    poke($temp, $at, $byte eq 'Z' ? 'Y' : 'Z');
    my $other = client($hosts[1], $path, "$dir/tampered-1");
    sleep 0.5;
    poke($temp, $at, $byte);

    waitpid($_, 0) for $leader, $other;
    my ($l, $f) = map { JSON::PP->new->decode(RegTest::slurp($_) || '{}') }
                  "$dir/tampered-0", "$dir/tampered-1";

    is(right($bytes{tampered}, $l), 1, 'the leader\'s client: the right bytes');
    is($f->{status}, 200, 'the other host\'s client: 200');
    cmp_ok($f->{got}, '<', length $bytes{tampered}, 'but not the last byte')
        or diag(explain($f));
    my $said = qr/blob \Q$d\E read from another host's temporary file/;
    like(errors(), qr/$said hashes to/, 'its follower said why');
    is(sha256_hex(RegTest::slurp($hosts[0]->blob_path($d)) // ''),
       sha256_hex($bytes{tampered}), 'the right blob published');
    is(upstream_gets('lib/tampered'), 1, 'one upstream fetch');
}

# the leader's worker killed mid-fetch

# the worker of either host that has $file open for writing, and the
# hosts whose workers read it
sub file_users {
    my ($file) = @_;
    my ($writer, %readers);

    for my $i (0, 1) {
        for my $pid ($hosts[$i]->pids_of_workers) {
            opendir(my $dh, "/proc/$pid/fd") or next;
            for my $fd (grep { /^\d+$/ } readdir $dh) {
                next unless (readlink("/proc/$pid/fd/$fd") // '') eq $file;
                my ($flags) = RegTest::slurp("/proc/$pid/fdinfo/$fd")
                              =~ /^flags:\s+([0-7]+)/m;
                if ((oct($flags) & 3) == 1) {
                    $writer = [$i, $pid];
                } else {
                    $readers{$i} = 1;
                }
            }
            closedir $dh;
        }
    }

    return ($writer, \%readers);
}

{
    my $d = $digest{doomed};
    my ($writer, $readers, $killed);

    my @r = clients('lib/doomed', $d, 6, undef, sub {
        my $temp;
        for (1 .. 400) {
            ($temp) = grep { -s $_ >= 512 * 1024 } glob("$v2/_ngx_tmp/*");
            last if $temp;
            sleep 0.025;
        }

        # the other host's follower opens the file within a look or two
        sleep 0.5;
        ($writer, $readers) = file_users($temp // '');
        kill 'KILL', $writer->[1] if $writer;
        $killed = time;
    });

    ok($writer, 'a worker of one host writes the temporary file');
    ok($readers->{1 - ($writer // [0])->[0]},
       'the other host\'s follower reads it');
    is(scalar(grep { $_->{got} == length $bytes{doomed} } @r), 0,
       'every client ended short of the last byte')
        or diag(explain(\@r));
    cmp_ok(time - $killed, '<', 5, 'at once, not after the staleness bound');
    is(scalar(grep { $_->{status} == 200 } @r), 6, 'after a 200');
    ok(!-e $hosts[0]->blob_path($d), 'nothing published');

    my $again = $hosts[1]->req('GET', "/v2/up/lib/doomed/blobs/$d");
    is($again->{status}, 200, 'the next pull: 200');
    is(sha256_hex($again->{content}), sha256_hex($bytes{doomed}),
       'the right bytes, fetched again');
    is(upstream_gets('lib/doomed'), 2, 'the second upstream fetch');
    ok(!-e lease_file($d), 'no lease left');
}

$_->stop for @hosts;
$up->stop;

done_testing();
