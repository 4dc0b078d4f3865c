#!/usr/bin/perl

# Misbehaving clients, on raw sockets:
# - a client that goes away in the middle of a PATCH, a monolithic POST or
#   the last chunk of a PUT: no partial blob is ever visible; the session
#   either resumes from exactly the bytes it reports (and completes with
#   the right digest) or answers BLOB_UPLOAD_UNKNOWN;
# - a body shorter than its Content-Length from a client that stays:
#   client_body_timeout (2s here) ends the request, the session resumes;
# - a body longer than its Content-Length: the extra bytes are the next
#   request of the connection (answered as one, or refused by nginx as
#   garbage), never part of the blob;
# - a slow writer (one byte a second, then silence) lives while bytes come
#   within client_body_timeout and is cut once they stop; a reader that
#   stops reading a blob is cut by send_timeout while others are served.
# The many-sessions cases (10,000 abandoned, 1,000 open at once) are in
# t/misbehaving_many.t.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Find;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;

my $t = RegTest->new(server_extra => <<'EOF');
        client_body_timeout 2s;
        send_timeout 2s;
EOF

my $v2 = $t->root . '/docker/registry/v2';

sub digest { 'sha256:' . sha256_hex($_[0]) }

sub conn {
    my ($t) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                  Proto => 'tcp')
        or die "connect: $!\n";
    $s->autoflush(1);
    return $s;
}

# everything the server sends until it closes (or $timeout s pass);
# (bytes, seconds it took, 1 if the server closed)
sub drain {
    my ($s, $timeout) = @_;
    my ($reply, $start, $closed) = ('', time, 0);
    my $sel = IO::Select->new($s);

    while (time - $start < $timeout) {
        next unless $sel->can_read(0.2);
        my $n = sysread($s, my $buf, 65536);
        if (!$n) {
            $closed = 1;
            last;
        }
        $reply .= $buf;
    }

    return ($reply, time - $start, $closed);
}

sub status_of { ($_[0] =~ /^HTTP\/1\.1 (\d{3})/)[0] // '' }

# a new session of $name, $prefix written to it: a Range of "0-0" would
# not say whether it holds one byte or none
sub session {
    my ($name, $prefix) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    die "session: $r->{status}\n" unless $r->{status} == 202;
    my $loc = $r->{headers}{location};

    if (defined $prefix) {
        $r = $t->req('PATCH', $loc, content => $prefix,
                     headers => { 'Content-Type'
                                  => 'application/octet-stream' });
        die "session: PATCH $r->{status}\n" unless $r->{status} == 202;
    }

    return $loc;
}

sub patch_head {
    my ($loc, $len, %h) = @_;
    return "PATCH $loc HTTP/1.1\r\nHost: localhost\r\n"
           . "Content-Type: application/octet-stream\r\n"
           . join('', map { "$_: $h{$_}\r\n" } sort keys %h)
           . "Content-Length: $len\r\n\r\n";
}

sub blob_status {
    my ($name, $d) = @_;
    return $t->req('GET', "/v2/$name/blobs/$d")->{status};
}

# a resumed session: the rest of $data (all of its bytes) from its
# offset, which is at least $min, then the PUT
sub resume_and_finish {
    my ($name, $loc, $data, $min, $what) = @_;

    my $r = $t->req('GET', $loc);

    if ($r->{status} == 404) {
        is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN',
           "$what: the session is gone, BLOB_UPLOAD_UNKNOWN");
        return;
    }

    is($r->{status}, 204, "$what: the session is still there");
    my ($end) = ($r->{headers}{range} // '') =~ /^0-(\d+)$/;
    ok(defined $end, "$what: its Range") or return;

    my $off = $end + 1;
    cmp_ok($off, '>=', $min, "$what: the bytes stored before are kept");

    my $rest = substr($data, $off);
    my %h = ('Content-Type' => 'application/octet-stream');
    $h{'Content-Range'} = $off . '-' . ($off + length($rest) - 1)
        if length $rest;

    $r = $t->req('PATCH', $loc, headers => \%h, content => $rest);
    is($r->{status}, 202, "$what: the rest from byte $off");

    $r = $t->req('PUT', $r->{headers}{location} . '?digest=' . digest($data));
    is($r->{status}, 201, "$what: completed with the digest of all bytes")
        or diag($r->{content});
    is($t->req('GET', "/v2/$name/blobs/" . digest($data))->{content}, $data,
       "$what: the blob is exactly the bytes sent");
}

sub tmp_files {
    my @f;
    find(sub { push @f, $File::Find::name if -f $_ }, "$v2/_ngx_tmp")
        if -d "$v2/_ngx_tmp";
    return @f;
}

sub pattern {
    my ($n, $seed) = @_;
    my $s = '';
    $s .= sprintf('%s-%08d|', $seed, length $s) while length $s < $n;
    return substr($s, 0, $n);
}

###############################################################################
# aborts mid-upload

{
    my $data = pattern(300000, 'abort');
    my $loc = session('mis/abort', 'AB');

    my $s = conn($t);
    print $s patch_head($loc, length $data) . substr($data, 0, 150000);
    sleep 0.5;
    close $s;
    sleep 1;

    is(blob_status('mis/abort', digest($data)), 404,
       'PATCH aborted: the whole blob is not there');
    is(blob_status('mis/abort', digest(substr($data, 0, 150000))), 404,
       'PATCH aborted: nor the part sent');
    resume_and_finish('mis/abort', $loc, "AB$data", 2, 'PATCH aborted');
}

{
    my $data = pattern(300000, 'mono');
    my $d = digest($data);

    my $s = conn($t);
    print $s "POST /v2/mis/mono/blobs/uploads/?digest=$d HTTP/1.1\r\n"
             . "Host: localhost\r\nContent-Type: application/octet-stream\r\n"
             . 'Content-Length: ' . length($data) . "\r\n\r\n"
             . substr($data, 0, 100000);
    sleep 0.5;
    close $s;
    sleep 1;

    is(blob_status('mis/mono', $d), 404,
       'monolithic POST aborted: no blob');
    ok(!-e $t->blob_path($d), 'monolithic POST aborted: no data in blobs/');
    is(join(' ', tmp_files()), '',
       'monolithic POST aborted: no temporary file left');

    # the same push, whole, then succeeds
    is($t->push_blob('mis/mono', $data), $d, 'the same POST whole: 201');
}

{
    my $data = pattern(200000, 'put');
    my $loc = session('mis/put');

    my $r = $t->req('PATCH', $loc, content => substr($data, 0, 50000),
                    headers => { 'Content-Type' => 'application/octet-stream' });
    is($r->{status}, 202, 'PUT aborted: a first chunk');

    my $s = conn($t);
    print $s "PUT $loc?digest=" . digest($data) . " HTTP/1.1\r\n"
             . "Host: localhost\r\nContent-Type: application/octet-stream\r\n"
             . 'Content-Length: 150000' . "\r\n\r\n"
             . substr($data, 50000, 70000);
    sleep 0.5;
    close $s;
    sleep 1;

    is(blob_status('mis/put', digest($data)), 404,
       'PUT with its last chunk aborted: no blob');
    ok(!-e $t->blob_path(digest($data)),
       'PUT with its last chunk aborted: no data in blobs/');
    resume_and_finish('mis/put', $loc, $data, 50000, 'PUT aborted');
}

###############################################################################
# a body shorter than Content-Length, the client waiting: client_body_timeout

{
    my $data = pattern(5000, 'short');
    my $loc = session('mis/short', 'AB');

    my $s = conn($t);
    print $s patch_head($loc, 10000) . $data;

    my ($reply, $took, $closed) = drain($s, 15);
    close $s;

    ok($closed, 'shorter body: the server ends the connection');
    cmp_ok($took, '>=', 1.5, 'shorter body: after client_body_timeout')
        or diag("after $took s: $reply");
    like(status_of($reply), qr/^(?:408|)$/,
         'shorter body: a 408 or no answer at all')
        or diag($reply);

    is(blob_status('mis/short', digest($data)), 404,
       'shorter body: no blob of the bytes sent');
    resume_and_finish('mis/short', $loc, 'AB' . pattern(12000, 'short'), 2,
                      'shorter body');
}

###############################################################################
# a body longer than Content-Length: the rest is the next request

{
    my $loc = session('mis/long');

    my $s = conn($t);
    print $s patch_head($loc, 10) . '0123456789'
             . "GET $loc HTTP/1.1\r\nHost: localhost\r\n"
             . "Connection: close\r\n\r\n";

    my ($reply, undef, $closed) = drain($s, 15);
    close $s;

    my @status = $reply =~ /^HTTP\/1\.1 (\d{3})/mg;
    is("@status", '202 204',
       'longer body: the chunk accepted, then the next request answered');
    like($reply, qr/\r\nRange: 0-9\r\n.*\r\nRange: 0-9\r\n/s,
         'longer body: 10 bytes in the session, before and after');

    $s = conn($t);
    print $s patch_head($loc, 5, 'Content-Range' => '10-14') . 'abcde'
             . "\x01\x02 garbage that is no request\r\n\r\n";

    ($reply) = drain($s, 15);
    close $s;

    @status = $reply =~ /^HTTP\/1\.1 (\d{3})/mg;
    is("@status", '202 400',
       'longer body with garbage: the chunk accepted, the garbage refused');

    my $r = $t->req('PUT', "$loc?digest=" . digest('0123456789abcde'));
    is($r->{status}, 201, 'longer bodies: the session completes')
        or diag($r->{content});
    is($t->req('GET', '/v2/mis/long/blobs/' . digest('0123456789abcde'))
       ->{content}, '0123456789abcde',
       'longer bodies: the blob holds the declared bytes only');

    # a monolithic POST with more than it declares
    my $d = digest('monolithic');
    $s = conn($t);
    print $s "POST /v2/mis/long/blobs/uploads/?digest=$d HTTP/1.1\r\n"
             . "Host: localhost\r\nContent-Length: 10\r\n\r\nmonolithic"
             . "EXTRA BYTES\r\n\r\n";
    ($reply) = drain($s, 15);
    close $s;

    @status = $reply =~ /^HTTP\/1\.1 (\d{3})/mg;
    is("@status", '201 400',
       'monolithic POST with extra bytes: 201, the extra bytes refused');
    is($t->req('GET', "/v2/mis/long/blobs/$d")->{content}, 'monolithic',
       'monolithic POST with extra bytes: the blob is the declared bytes');
}

###############################################################################
# slow clients

{
    my $loc = session('mis/slow', 'AB');
    my $data = 'slowly';

    my $s = conn($t);
    print $s patch_head($loc, 100);

    # a byte a second for longer than client_body_timeout: still alive
    my $alive = 1;
    for my $c (split //, $data) {
        sleep 1;
        $alive &&= print $s $c;
        $alive &&= !IO::Select->new($s)->can_read(0);
    }

    ok($alive, 'a byte a second for 6 s: the request lives on');

    # then silence: cut by client_body_timeout
    my ($reply, $took, $closed) = drain($s, 15);
    close $s;

    ok($closed, 'silence: the server ends the connection');
    cmp_ok($took, '>=', 1.5, 'silence: after client_body_timeout');
    like(RegTest::slurp($t->dir . '/access.log'),
         qr/"PATCH \Q$loc\E HTTP\/1\.1" 408 /,
         'silence: 408 in access.log');

    resume_and_finish('mis/slow', $loc, "AB$data" . pattern(94, 'x'), 2,
                      'slow writer');
}

{
    my $blob = pattern(32 * 1024 * 1024, 'big');
    my $d = digest($blob);

    # pushed through an nginx of the default timeouts on the same store:
    # on a busy machine a 2 s client_body_timeout may cut a 32 MiB body
    my $plain = RegTest->new(root => $t->root);
    is($plain->push_blob('mis/reader', $blob), $d, 'a 32 MiB blob pushed');
    $plain->stop;

    # 32 MiB is more than the socket buffers of both ends hold
    my $s = conn($t);
    print $s "GET /v2/mis/reader/blobs/$d HTTP/1.1\r\nHost: localhost\r\n\r\n";
    sysread($s, my $first, 1024);
    like($first // '', qr/^HTTP\/1\.1 200/, 'slow reader: the pull starts');

    # reads nothing for 6 s, while another client is served at once
    my $start = time;
    my $other = $t->req('GET', '/v2/');
    is($other->{status}, 200, 'slow reader: another client is served');
    cmp_ok(time - $start, '<', 2, 'slow reader: at once');
    sleep 6;

    my ($rest, undef, $closed) = drain($s, 15);
    close $s;

    ok($closed, 'slow reader: the server ended the connection');
    cmp_ok(length($first . $rest), '<', length $blob,
           'slow reader: cut before the end of the blob (send_timeout)');
    like($t->error_log, qr/client timed out .*"GET \/v2\/mis\/reader\/blobs/,
         'slow reader: "client timed out" in error.log');
}

is($t->req('GET', '/v2/')->{status}, 200, 'the server still answers');
$t->stop;

done_testing();
