#!/usr/bin/perl

# Acceptance: "A 256 MiB blob pushed monolithically and in 16 MiB chunks,
# then pulled, grows a worker's RSS by less than 8 MiB."
#
# One worker, with sendfile off (nginx's default) and then on.  Its VmRSS
# (and peak, VmHWM) is read from /proc before and after: a monolithic POST
# ?digest= of 256 MiB, a 256 MiB upload in sixteen 16 MiB PATCHes with
# Content-Range, and a GET of each blob.  The test itself never holds a blob
# either: the bytes are generated on the fly (a 1 MiB pseudo-random buffer
# varied by a counter), hashed incrementally and written to / read from a
# plain socket in 1 MiB pieces.

use strict;
use warnings;

use Test::More;
use Digest::SHA;
use IO::Socket::INET;
use Time::HiRes qw(time);

use lib 't/lib';
use RegTest;

my $MIB = 1024 * 1024;
my $SIZE = 256 * $MIB;
my $CHUNK = 16 * $MIB;
my $LIMIT_KIB = 8 * 1024;

$SIG{PIPE} = 'IGNORE';

my $t;     # the nginx of the scenario running

# 1 MiB of SHA-256 chain output; MiB number $i of blob $seed is this buffer
# with its first 32 bytes replaced by sha256("$seed:$i").

my $BASE = '';
{
    my $h = 'ngx-registry-memory';
    while (length($BASE) < $MIB) {
        $h = Digest::SHA::sha256($h);
        $BASE .= $h;
    }
}

sub piece {
    my ($seed, $i) = @_;
    my $buf = $BASE;
    substr($buf, 0, 32) = Digest::SHA::sha256("$seed:$i");
    return $buf;
}

# generator of MiB pieces $from .. $to - 1

sub pieces {
    my ($seed, $from, $to) = @_;
    my $i = $from;
    return sub { return $i < $to ? piece($seed, $i++) : undef };
}

sub blob_digest {
    my ($seed) = @_;
    my $sha = Digest::SHA->new(256);
    my $next = pieces($seed, 0, $SIZE / $MIB);
    while (defined(my $p = $next->())) {
        $sha->add($p);
    }
    return 'sha256:' . $sha->hexdigest;
}

sub status_kib {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/status") or return {};
    my %v;
    while (<$fh>) {
        $v{$1} = $2 if /^(VmRSS|VmHWM):\s+(\d+)\s+kB/;
    }
    return \%v;
}

# One HTTP/1.1 request over a fresh connection.  The body comes from
# $gen (a coderef returning pieces, undef at the end) and must total
# $length bytes.  The response body is hashed, not kept.  Returns
# { status, headers => {lc name => value}, length, digest }.

sub stream_request {
    my ($method, $path, %o) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp', Timeout => 10)
        or die "connect: $!\n";
    binmode $s;

    my $len = $o{length} // 0;
    my $head = "$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        . "Connection: close\r\nContent-Length: $len\r\n";

    for my $k (sort keys %{ $o{headers} || {} }) {
        $head .= "$k: $o{headers}{$k}\r\n";
    }

    $head .= "\r\n";

    my $ok = _write_all($s, $head);

    if ($ok && $o{body}) {
        while (defined(my $p = $o{body}->())) {
            last unless $ok = _write_all($s, $p);
        }
    }

    # the response: headers, then the body into a digest

    my $buf = '';
    my $sha = Digest::SHA->new(256);
    my ($status, %h);
    my $got = 0;

    while (1) {
        my $n = sysread($s, my $data, $MIB);
        last unless $n;

        if (!defined $status) {
            $buf .= $data;
            my $end = index($buf, "\r\n\r\n");
            next if $end < 0;

            my @lines = split /\r\n/, substr($buf, 0, $end);
            ($status) = (shift(@lines) // '') =~ m{^HTTP/1\.\d (\d{3})};
            $status //= 0;

            for (@lines) {
                $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
            }

            $data = substr($buf, $end + 4);
            $buf = '';
        }

        $got += length $data;
        $sha->add($data);
    }

    close $s;

    return { status => $status // 0, headers => \%h, length => $got,
             digest => 'sha256:' . $sha->hexdigest };
}

sub _write_all {
    my ($s, $data) = @_;
    my $off = 0;
    while ($off < length $data) {
        my $n = syswrite($s, $data, length($data) - $off, $off);
        return 0 unless $n;
        $off += $n;
    }
    return 1;
}

my $t0 = time;
my $mono = blob_digest('monolithic');
my $chunked = blob_digest('chunked');
diag(sprintf('generated digests of 2 x 256 MiB in %.1fs', time - $t0));

# The whole scenario, in a fresh nginx with one worker.  Blob GETs are
# served from the file either through sendfile or read into nginx's output
# buffers (sendfile off, nginx's default): both must stay small.

for my $sendfile ('off', 'on') {
    subtest "sendfile $sendfile" => sub { scenario($sendfile) };
}

done_testing();

sub scenario {
    my ($sendfile) = @_;

    $t = RegTest->new(workers => 1, http_extra => "sendfile $sendfile;");

    my @workers = $t->pids_of_workers;
    is(scalar @workers, 1, 'one worker') or return;
    my $worker = $workers[0];
    my $t0;

    # the worker has served a request before the baseline

    is($t->req('GET', '/v2/')->{status}, 200, 'GET /v2/');

    my $before = status_kib($worker);
    ok($before->{VmRSS}, "baseline VmRSS of worker $worker");

    # 1. monolithic POST ?digest=

    $t0 = time;
    my $r = stream_request('POST', "/v2/mem/test/blobs/uploads/?digest=$mono",
                           headers => { 'Content-Type' => 'application/octet-stream' },
                           length => $SIZE,
                           body => pieces('monolithic', 0, $SIZE / $MIB));
    is($r->{status}, 201, 'monolithic POST of 256 MiB: 201');
    is($r->{headers}{'docker-content-digest'}, $mono, 'monolithic: digest');
    diag(sprintf('monolithic push: %.1fs', time - $t0));

    my $mid = status_kib($worker);

    # 2. sixteen 16 MiB PATCHes, then PUT ?digest=

    $t0 = time;
    $r = stream_request('POST', '/v2/mem/test/blobs/uploads/');
    is($r->{status}, 202, 'chunked: POST opens an upload');
    my $loc = $r->{headers}{location} // '';
    like($loc, qr{^(?:https?://[^/]+)?/v2/mem/test/blobs/uploads/}, 'chunked: Location');
    $loc =~ s{^https?://[^/]+}{};

    my $chunks_ok = 0;

    for (my $off = 0; $off < $SIZE; $off += $CHUNK) {
        my $end = $off + $CHUNK - 1;
        $r = stream_request('PATCH', $loc,
                            headers => { 'Content-Type' => 'application/octet-stream',
                                         'Content-Range' => "$off-$end" },
                            length => $CHUNK,
                            body => pieces('chunked', $off / $MIB, ($end + 1) / $MIB));

        unless ($r->{status} == 202 && ($r->{headers}{range} // '') eq "0-$end") {
            fail("PATCH $off-$end: status $r->{status}, Range "
                 . ($r->{headers}{range} // 'none'));
            last;
        }

        $chunks_ok++;
        if ($r->{headers}{location}) {
            ($loc = $r->{headers}{location}) =~ s{^https?://[^/]+}{};
        }
    }

    is($chunks_ok, $SIZE / $CHUNK, 'chunked: sixteen 16 MiB PATCHes accepted');

    my $sep = $loc =~ /\?/ ? '&' : '?';
    $r = stream_request('PUT', "$loc${sep}digest=$chunked");
    is($r->{status}, 201, 'chunked: PUT ?digest= completes the upload');
    is($r->{headers}{'docker-content-digest'}, $chunked, 'chunked: digest');
    diag(sprintf('chunked push: %.1fs', time - $t0));

    # 3. pull both

    for my $d ($mono, $chunked) {
        $t0 = time;
        $r = stream_request('GET', "/v2/mem/test/blobs/$d");
        is($r->{status}, 200, "GET $d");
        is($r->{length}, $SIZE, 'GET: 256 MiB');
        is($r->{digest}, $d, 'GET: bytes hash to the digest');
        diag(sprintf('pull: %.1fs', time - $t0));
    }

    my $after = status_kib($worker);

    ok(kill(0, $worker), 'the same worker is still running');

    my $growth = ($after->{VmRSS} // 0) - ($before->{VmRSS} // 0);
    my $peak = ($after->{VmHWM} // 0) - ($before->{VmRSS} // 0);

    diag(sprintf("sendfile $sendfile: " . 'worker %d VmRSS: before %d KiB, after monolithic push %d KiB, '
                 . 'after all %d KiB; growth %d KiB', $worker,
                 $before->{VmRSS} // 0, $mid->{VmRSS} // 0,
                 $after->{VmRSS} // 0, $growth));
    diag(sprintf("sendfile $sendfile: " . 'worker %d VmHWM (peak): before %d KiB, after %d KiB; '
                 . 'peak above the baseline RSS %d KiB', $worker,
                 $before->{VmHWM} // 0, $after->{VmHWM} // 0, $peak));

    cmp_ok($growth, '<', $LIMIT_KIB, 'worker RSS grew by less than 8 MiB');
    cmp_ok($peak, '<', $LIMIT_KIB, 'worker peak RSS stayed within 8 MiB of the baseline');

    $t->stop;
}
