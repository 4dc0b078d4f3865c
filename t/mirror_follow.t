#!/usr/bin/perl

# Followers of a blob's fetch read the leader's growing file (issue 17).
# The upstream sends slowly (limit_rate 1m: a 4 MiB blob takes some 3 s):
# - 20 clients at once: each has its first 256 KiB while the upstream is
#   still sending (its access log has no line for the fetch yet, which
#   nginx writes when a request ends) and before the blob is published;
#   all 20 get the right bytes from one upstream fetch (sendfile on); a
#   client that reads nothing for 4 s gets them too; a Range request among
#   them waits for the publish and gets its bytes;
# - other bytes of the right length: every client gets bytes as they come,
#   none gets a whole body, nothing is published, no temporary file stays;
# - the leader's worker killed (kill -9) mid-fetch, followers in the other
#   worker: every client gets the right bytes or a short body, nothing
#   wrong is published, and the next pull fetches the blob again.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use Digest::SHA qw(sha256_hex);

use lib 't/lib';
use RegTest;
use MirrorTest;

my $SIZE = 4 * 1024 * 1024;
my $FIRST = $MirrorTest::FIRST;
my $CLIENTS = 20;

my $dir = tempdir('mirror-follow-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

# 4 MiB nobody has pulled before
sub blob_bytes {
    my $b = '';
    $b .= pack('N', $_) x 1024 for 1 .. $SIZE / 4096;
    substr($b, 0, 16) = sprintf('%016d', int rand 1e15);
    return $b;
}

my $slow = blob_bytes();
my $good = blob_bytes();        # what the upstream should send for x/evil
my $evil = 'x' x $SIZE;         # what it does send
RegTest::spew("$dir/evil", $evil);

my $up = RegTest->new(location_extra => 'limit_rate 1m;',
                      server_extra => <<"EOF");
        location ^~ /v2/x/evil/ {
            limit_rate 1m;
            default_type application/octet-stream;
            root $dir;
            try_files /evil =404;
        }
EOF
my $sd = $up->push_blob('lib/slow', $slow);
my $gd = RegTest::digest($good);

# clients in children, and what they saw (MirrorTest::stream_client())
sub client { MirrorTest::stream_client(@_) }
sub results { MirrorTest::stream_results(@_) }

sub wait_all { waitpid($_, 0) for @_ }

sub upstream_gets {
    my ($re) = @_;
    return MirrorTest::upstream_hits($up, $re);
}

my $url = 'http://127.0.0.1:' . $up->port;

# 20 clients, a slow one and a Range request among them, with sendfile

{
    # a small send buffer: what a client has not taken soon waits in nginx
    my $m = MirrorTest::mirror($url,
        opts => { workers => 2, listen_extra => 'sndbuf=32k' },
        location_extra => 'sendfile on;');
    my $path = "/v2/up/lib/slow/blobs/$sd";
    my $probe = sub {
        return { upstream_done => upstream_gets(qr{"GET /v2/lib/slow/blobs/}),
                 published => -e $m->blob_path($sd) ? 1 : 0 };
    };

    my @pids = map { client($m->port, $path, "$dir/slow-$_", $probe) }
               1 .. $CLIENTS;
    select undef, undef, undef, 0.2;
    my $ranged = client($m->port, $path, "$dir/slow-range", sub { 1 },
                        Range => 'bytes=0-99');
    my $lazy = client($m->port, $path, "$dir/slow-lazy", 'slow');
    wait_all(@pids, $ranged, $lazy);

    my @r = results(map { "$dir/slow-$_" } 1 .. $CLIENTS);
    my $hex = sha256_hex($slow);

    is(scalar(grep { $_->{status} == 200 && $_->{got} == $SIZE
                     && $_->{sha} eq $hex } @r),
       $CLIENTS, "all $CLIENTS clients got the right bytes")
        or diag(explain(\@r));
    is_deeply([ map { $_->{probe} } @r ],
              [ ({ upstream_done => 0, published => 0 }) x $CLIENTS ],
              "each had its first $FIRST bytes while the upstream was "
              . 'still sending, before the publish');
    is(upstream_gets(qr{"GET /v2/lib/slow/blobs/}), 1, 'one upstream fetch');
    ok(-f $m->blob_path($sd), 'published');
    ok(-f $m->layer_link('up/lib/slow', $sd), 'linked');

    my ($lazy_r) = results("$dir/slow-lazy");
    is_deeply([ @$lazy_r{qw(status got sha)} ], [ 200, $SIZE, $hex ],
              'a client slower than the upstream: the right bytes');

    my ($range) = results("$dir/slow-range");
    is($range->{status}, 206, 'a Range request among the followers: 206');
    is($range->{head}, substr($slow, 0, 100), 'its bytes');

    $m->stop;
}

# other bytes than the digest's: no client has them all, nothing is kept

{
    my $m = MirrorTest::mirror($url, opts => {
        workers => 2, expect_in_log => qr/hashes to/ });
    my $v2 = $m->root . '/docker/registry/v2';
    my $path = "/v2/up/x/evil/blobs/$gd";

    my @pids = map { client($m->port, $path, "$dir/evil-$_", sub { 1 }) }
               1 .. $CLIENTS;
    wait_all(@pids);

    my @r = results(map { "$dir/evil-$_" } 1 .. $CLIENTS);

    is(scalar(grep { $_->{status} == 200 && $_->{length} == $SIZE } @r),
       $CLIENTS, "all $CLIENTS were answered 200 with the upstream's length")
        or diag(explain(\@r));
    is(scalar(grep { $_->{got} >= $FIRST } @r), $CLIENTS,
       "and each had $FIRST bytes or more as they came");
    is(scalar(grep { $_->{got} >= $SIZE } @r), 0, 'none got a whole body');
    is(upstream_gets(qr{"GET /v2/x/evil/blobs/}), 1,
       'one upstream fetch: the followers ended, they did not fetch again');
    ok(!-e $m->blob_path($gd), 'nothing published');
    ok(!-e "$v2/repositories/up/x/evil/_layers", 'no link either');
    is(scalar(() = glob("$v2/_ngx_tmp/*")), 0, 'no temporary file left');
    like($m->error_log, qr/followed was not published/,
         'the followers logged why they ended');

    $m->stop;
}

# the leader's worker killed mid-fetch

# the worker that has $file open for writing, and those reading it
sub file_users {
    my ($m, $file) = @_;
    my (%writer, %readers);

    for my $pid ($m->pids_of_workers) {
        opendir(my $dh, "/proc/$pid/fd") or next;
        for my $fd (grep { /^\d+$/ } readdir $dh) {
            next unless (readlink("/proc/$pid/fd/$fd") // '') eq $file;
            my ($flags) = RegTest::slurp("/proc/$pid/fdinfo/$fd")
                          =~ /^flags:\s+([0-7]+)/m;
            if ((oct($flags) & 3) == 1) {
                $writer{$pid} = 1;
            } else {
                $readers{$pid}++;
            }
        }
        closedir $dh;
    }

    return ([keys %writer], \%readers);
}

{
    my $m = MirrorTest::mirror($url, opts => {
        workers => 2, listen_extra => 'reuseport',
        expect_in_log => qr/exited on signal 9/ });
    my $v2 = $m->root . '/docker/registry/v2';
    my $path = "/v2/up/lib/slow/blobs/$sd";

    # a new mirror: the blob is cold again
    my @pids = map { client($m->port, $path, "$dir/kill-$_", sub { 1 }) }
               1 .. $CLIENTS;

    # the leader's file, once past the first second's burst
    my $temp;
    for (1 .. 400) {
        ($temp) = grep { -s $_ >= 1536 * 1024 } glob("$v2/_ngx_tmp/*");
        last if $temp;
        select undef, undef, undef, 0.025;
    }
    ok($temp, 'the leader is writing its temporary file');

    my ($writer, $readers) = file_users($m, $temp // '');
    is(scalar(@$writer), 1, 'one worker writes it');
    my ($other) = grep { $_ != ($writer->[0] // 0) } $m->pids_of_workers;
    ok($readers->{$other // 0}, 'followers in the other worker read it');

    kill 'KILL', @$writer;
    wait_all(@pids);

    my @r = results(map { "$dir/kill-$_" } 1 .. $CLIENTS);
    my $hex = sha256_hex($slow);
    my @whole = grep { $_->{got} == $SIZE } @r;

    is(scalar(grep { $_->{sha} ne $hex } @whole), 0,
       'no client has a whole body with other bytes')
        or diag(explain(\@r));
    ok(scalar(grep { $_->{got} < $SIZE } @r) > 0,
       'the followers ended with a short body');
    ok(!-e $m->blob_path($sd)
       || sha256_hex(RegTest::slurp($m->blob_path($sd))) eq $hex,
       'nothing wrong published');

    my $again = $m->req('GET', $path);
    is($again->{status}, 200, 'the next pull: 200');
    is(sha256_hex($again->{content}), $hex, 'the right bytes, fetched again');
    ok(-f $m->blob_path($sd), 'now published');

    $m->stop;
}

$up->stop;

done_testing();
