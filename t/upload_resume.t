#!/usr/bin/perl

# An upload session lives in the store (offset and hash state saved at
# each chunk boundary), not in a worker: it continues after a reload, after
# its worker is killed (-9) in the middle of a chunk, on another nginx
# instance sharing the store, and on another worker process.  Also the
# OCI-Chunk-Min-Length header of the POST that starts a session
# (registry_chunk_min_length).

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use IO::Socket::INET;

use lib 't/lib';
use RegTest;

my $UUID = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

# 2 MB of incompressible bytes and its chunk boundaries (odd sizes, not
# multiples of the 64-byte sha256 block)
my $blob = join '', map { Digest::SHA::sha256("resume $_") } 1 .. 65_536;
my $digest = RegTest::digest($blob);
my @cuts = (0, 300_001, 700_003, 1_500_007, length $blob);

sub start {
    my ($t, $name) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    die "start upload: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    return $r->{headers}{location};
}

sub chunk {
    my ($i) = @_;
    my ($from, $to) = @cuts[$i, $i + 1];
    return ($from, $to - 1, substr($blob, $from, $to - $from));
}

# PATCH chunk $i of @cuts; one assertion: 202 with the range up to its end
sub patch_chunk {
    my ($t, $loc, $i, $name) = @_;
    my ($from, $end, $data) = chunk($i);
    my $r = $t->req('PATCH', $loc, content => $data,
                    headers => { 'Content-Type' => 'application/octet-stream',
                                 'Content-Range' => "$from-$end" });
    ok($r->{status} == 202 && ($r->{headers}{range} // '') eq "0-$end", $name)
        or diag("PATCH $from-$end: $r->{status} "
                . ($r->{headers}{range} // '-') . " $r->{content}");
    return $r;
}

sub upload_dir {
    my ($t, $name, $loc) = @_;
    my ($id) = $loc =~ m{/([^/]+)$};
    return $t->root . "/docker/registry/v2/repositories/$name/_uploads/$id";
}

# ---- (a) across a reload ----

my $t = RegTest->new();

my $loc = start($t, 'res/reload');
patch_chunk($t, $loc, 0, 'reload: chunk 1');

my @old = $t->pids_of_workers;
my @new = $t->reload();
ok(@new && !(grep { my $n = $_; grep { $_ == $n } @old } @new),
   'reload: the workers were replaced');

my $r = $t->req('GET', $loc);
is($r->{status}, 204, 'reload: session still known');
is($r->{headers}{range}, '0-' . ($cuts[1] - 1), 'reload: offset kept');

patch_chunk($t, $loc, 1, 'reload: chunk 2 on the new worker');

# a reload while a chunk is in flight: the old worker finishes it
{
    my ($from, $end, $data) = chunk(2);
    my $half = int(length($data) / 2);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port)
        or die "connect: $!";
    $s->autoflush(1);
    print $s "PATCH $loc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        . "Content-Range: $from-$end\r\nContent-Length: " . length($data)
        . "\r\n\r\n" . substr($data, 0, $half);

    my @before = $t->pids_of_workers;
    $t->reload(wait => 0);

    # new workers exist while the old one still serves this request
    my $started = 0;
    for (1 .. 100) {
        my %b = map { $_ => 1 } @before;
        $started = grep { !$b{$_} } $t->pids_of_workers;
        last if $started;
        select undef, undef, undef, 0.05;
    }
    ok($started, 'reload in flight: new workers started');

    print $s substr($data, $half);
    my $reply = '';
    while (sysread($s, my $buf, 65536)) { $reply .= $buf }
    close $s;
    like($reply, qr{^HTTP/1\.1 202 }, 'reload in flight: old worker finished the chunk');
    like($reply, qr{\r\nRange: 0-$end\r\n}i, 'reload in flight: range');

    $t->reload_done();
}

$r = $t->req('GET', $loc);
is($r->{headers}{range}, '0-' . ($cuts[3] - 1), 'reload in flight: new worker sees the chunk');

patch_chunk($t, $loc, 3, 'reload: last chunk');
$r = $t->req('PUT', "$loc?digest=$digest");
is($r->{status}, 201, 'reload: PUT, digest right');
ok($t->req('GET', "/v2/res/reload/blobs/$digest")->{content} eq $blob,
   'reload: blob bytes');

$t->stop();

# ---- (b) worker killed (-9) in the middle of a chunk ----

$t = RegTest->new(expect_in_log => qr/exited on signal 9/);

$loc = start($t, 'res/kill');
my $dir = upload_dir($t, 'res/kill', $loc);
patch_chunk($t, $loc, 0, 'kill: chunk 1');
patch_chunk($t, $loc, 1, 'kill: chunk 2');

{
    my ($from, $end, $data) = chunk(2);
    my $half = int(length($data) / 2);
    my ($worker) = $t->pids_of_workers;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port)
        or die "connect: $!";
    $s->autoflush(1);
    print $s "PATCH $loc HTTP/1.1\r\nHost: x\r\n"
        . "Content-Range: $from-$end\r\nContent-Length: " . length($data)
        . "\r\n\r\n" . substr($data, 0, $half);

    # part of the cut chunk reached the data file before the kill
    my $written = 0;
    for (1 .. 100) {
        $written = (-s "$dir/data" // 0) > $from + $half / 2;
        last if $written;
        select undef, undef, undef, 0.05;
    }
    ok($written, 'kill: part of chunk 3 on disk before the kill');

    kill 'KILL', $worker;
    close $s;

    my $respawned = 0;
    for (1 .. 100) {
        my @w = $t->pids_of_workers;
        $respawned = @w && $w[0] != $worker;
        last if $respawned;
        select undef, undef, undef, 0.05;
    }
    ok($respawned, 'kill: the master started a new worker');
}

$r = $t->req('GET', $loc);
is($r->{status}, 204, 'kill: session survives');
is($r->{headers}{range}, '0-' . ($cuts[2] - 1), 'kill: range is the last complete chunk');

# a chunk past the saved offset (as if the cut one had arrived) is refused
$r = $t->req('PATCH', $loc, content => 'x',
             headers => { 'Content-Range' => "$cuts[3]-$cuts[3]" });
is($r->{status}, 416, 'kill: a chunk after the cut one is refused');

patch_chunk($t, $loc, 2, 'kill: chunk 3 sent again');
patch_chunk($t, $loc, 3, 'kill: chunk 4');
$r = $t->req('PUT', "$loc?digest=$digest");
is($r->{status}, 201, 'kill: PUT, digest right (stray bytes dropped)');
$r = $t->req('GET', "/v2/res/kill/blobs/$digest");
ok($r->{status} == 200 && $r->{content} eq $blob, 'kill: blob bytes');
like($t->error_log, qr/exited on signal 9/, 'kill: the kill is in the log');

$t->stop();

# ---- (c) chunks on two instances sharing the store ----

my $a = RegTest->new();
my $b = RegTest->new(root => $a->root);
isnt($a->port, $b->port, 'two instances, two ports');

$loc = start($a, 'res/two');
patch_chunk($a, $loc, 0, 'two instances: chunk 1 on A');

$r = $b->req('GET', $loc);
is($r->{status}, 204, 'two instances: B knows the session');
is($r->{headers}{range}, '0-' . ($cuts[1] - 1), 'two instances: B sees offset of A');

patch_chunk($b, $loc, 1, 'two instances: chunk 2 on B');

$r = $a->req('GET', $loc);
is($r->{headers}{range}, '0-' . ($cuts[2] - 1), 'two instances: A sees offset of B');

patch_chunk($a, $loc, 2, 'two instances: chunk 3 on A');
patch_chunk($b, $loc, 3, 'two instances: chunk 4 on B');

$r = $a->req('PUT', "$loc?digest=$digest");
is($r->{status}, 201, 'two instances: PUT on A');
is($r->{headers}{'docker-content-digest'}, $digest, 'two instances: digest');
ok($a->req('GET', "/v2/res/two/blobs/$digest")->{content} eq $blob,
   'two instances: blob bytes on A');
ok($b->req('GET', "/v2/res/two/blobs/$digest")->{content} eq $blob,
   'two instances: blob bytes on B');
is($b->req('GET', $loc)->{status}, 404, 'two instances: session gone on B too');

$b->stop();
$a->stop();

# ---- (d) two worker processes ----

# reuseport binds each connection to one worker; X-Worker names it
$t = RegTest->new(workers => 2, listen_extra => 'reuseport',
                  location_extra => 'add_header X-Worker $pid always;');

# a keep-alive client whose connection is served by a worker other than $not
sub client_on_worker {
    my ($not) = @_;
    for (1 .. 64) {
        my $h = HTTP::Tiny->new(keep_alive => 1, max_redirect => 0, timeout => 30);
        my $r = $h->get($t->url('/v2/'));
        my $w = $r->{headers}{'x-worker'} or next;
        return ($h, $w) unless defined $not && $w == $not;
    }
    return;
}

sub via {
    my ($h, $method, $path, %o) = @_;
    my $r = $h->request($method, $t->url($path), \%o);
    $r->{content} //= '';
    $r->{headers}{'x-worker'} //= '';
    return $r;
}

my ($h1, $w1) = client_on_worker();
my ($h2, $w2) = client_on_worker($w1);
ok($h1 && $h2, 'two workers: one connection on each')
    or BAIL_OUT('connections did not reach both workers');

{
    $r = via($h1, 'POST', '/v2/res/workers/blobs/uploads/');
    is($r->{status}, 202, 'workers: POST on worker 1');
    $loc = $r->{headers}{location};

    my ($from, $end, $data) = chunk(0);
    $r = via($h1, 'PATCH', $loc, content => $data,
             headers => { 'Content-Range' => "$from-$end" });
    is("$r->{status} $r->{headers}{'x-worker'}", "202 $w1", 'workers: chunk 1 on worker 1');

    $r = via($h2, 'GET', $loc);
    is("$r->{status} $r->{headers}{'x-worker'}", "204 $w2", 'workers: status on worker 2');
    is($r->{headers}{range}, "0-$end", 'workers: worker 2 sees the offset');

    ($from, $end, $data) = chunk(1);
    $r = via($h2, 'PATCH', $loc, content => $data,
             headers => { 'Content-Range' => "$from-$end" });
    is("$r->{status} $r->{headers}{'x-worker'}", "202 $w2", 'workers: chunk 2 on worker 2');
    is($r->{headers}{range}, "0-$end", 'workers: chunk 2 range');

    $r = via($h1, 'GET', $loc);
    is("$r->{status} $r->{headers}{'x-worker'}", "204 $w1", 'workers: status on worker 1');
    is($r->{headers}{range}, "0-$end", 'workers: worker 1 sees the offset');

    # the rest and the PUT on worker 1, whose own view is stale if it kept one
    $data = substr($blob, $cuts[2]);
    $r = via($h1, 'PUT', "$loc?digest=$digest", content => $data,
             headers => { 'Content-Range' => "$cuts[2]-" . (length($blob) - 1) });
    is("$r->{status} $r->{headers}{'x-worker'}", "201 $w1", 'workers: PUT on worker 1');
    $r = via($h2, 'GET', "/v2/res/workers/blobs/$digest");
    is($r->{headers}{'x-worker'}, $w2, 'workers: read back on worker 2');
    ok($r->{content} eq $blob, 'workers: blob bytes');
}

$t->stop();

# ---- OCI-Chunk-Min-Length ----

$t = RegTest->new();
$r = $t->req('POST', '/v2/res/min/blobs/uploads/');
is($r->{status}, 202, 'default: POST 202');
is($r->{headers}{'oci-chunk-min-length'}, '1048576',
   'default: OCI-Chunk-Min-Length 1048576');
$r = $t->req('POST', '/v2/res/min/blobs/uploads/?digest=' . RegTest::digest('m'),
             content => 'm');
is($r->{status}, 201, 'default: monolithic POST 201');
$t->stop();

$t = RegTest->new(location_extra => 'registry_chunk_min_length 64k;');
$r = $t->req('POST', '/v2/res/min/blobs/uploads/');
is($r->{status}, 202, '64k: POST 202');
is($r->{headers}{'oci-chunk-min-length'}, '65536', '64k: OCI-Chunk-Min-Length 65536');

# not enforced: chunks far below the minimum are accepted
$loc = $r->{headers}{location};
my $tiny = 'x' x 100 . 'y' x 100 . 'z' x 17;
$r = $t->req('PATCH', $loc, content => substr($tiny, 0, 100),
             headers => { 'Content-Range' => '0-99' });
is($r->{status}, 202, '64k: 100-byte chunk accepted');
$r = $t->req('PATCH', $loc, content => substr($tiny, 100, 100),
             headers => { 'Content-Range' => '100-199' });
is($r->{status}, 202, '64k: second 100-byte chunk accepted');
is($r->{headers}{range}, '0-199', '64k: range after small chunks');
$r = $t->req('PUT', "$loc?digest=" . RegTest::digest($tiny), content => substr($tiny, 200),
             headers => { 'Content-Range' => '200-216' });
is($r->{status}, 201, '64k: 17-byte last chunk and PUT');
$t->stop();

$t = RegTest->new(location_extra => 'registry_chunk_min_length 0;');
$r = $t->req('POST', '/v2/res/min/blobs/uploads/');
is($r->{status}, 202, '0: POST 202');
ok(!exists $r->{headers}{'oci-chunk-min-length'}, '0: no OCI-Chunk-Min-Length');
$t->stop();

done_testing();
