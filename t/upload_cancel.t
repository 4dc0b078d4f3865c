#!/usr/bin/perl

# DELETE of an upload session while a PATCH to it is still streaming its
# body: the session belongs to the PATCH, so the DELETE is refused
# (400 BLOB_UPLOAD_INVALID, "another request is writing to this upload")
# and the PATCH ends normally (202, its bytes kept, no [crit] in
# error.log); once the PATCH is done a DELETE cancels the session.  The
# same with a chunked PATCH body, with a PUT that finishes the session
# while a DELETE comes in, and with two workers (the DELETE reaching
# another worker than the PATCH).

use strict;
use warnings;

use Test::More;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;

use lib 't/lib';
use RegTest;

$SIG{PIPE} = 'IGNORE';

sub code { RegTest::error_code($_[0]) }

sub detail {
    my ($r) = @_;
    my $j = eval { JSON::PP->new->decode($r->{content}) } || {};
    return '' unless ref $j->{errors} eq 'ARRAY';
    my $e = $j->{errors}[0] || {};
    return join ' ', grep { defined } @$e{qw(message detail)};
}

sub start {
    my ($t, $name) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    die "start upload: $r->{status}\n" unless $r->{status} == 202;
    return $r->{headers}{location};
}

sub connect_raw {
    my ($t) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!\n";
    $s->autoflush(1);
    binmode $s;
    return $s;
}

sub send_raw {
    my ($s, $bytes) = @_;
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($s, $bytes, length($bytes) - $off, $off);
        return 0 unless defined $n && $n > 0;
        $off += $n;
    }
    return 1;
}

# whole response of a request sent with "Connection: close": status and
# lower-case headers; undef when nothing comes within $timeout seconds
sub read_all {
    my ($s, $timeout) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read($timeout // 10)) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.[01] (\d{3})} or return;
    my %h;
    for my $line (split /\r\n/, $head) {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*?)\s*$/;
    }
    return { status => $status, headers => \%h, content => $body // '' };
}

# whether the server answered already (it must not, mid-body)
sub answered {
    my ($s) = @_;
    return IO::Select->new($s)->can_read(0) ? 1 : 0;
}

sub settle { select undef, undef, undef, $_[0] // 0.3 }

my $first = 'A' x 20;
my $second = 'B' x 20;
my $blob = $first . $second;

sub cancel_during {
    my ($t, $what, $name, %o) = @_;

    my $loc = start($t, $name);

    my $s = connect_raw($t);
    if ($o{chunked}) {
        send_raw($s, "PATCH $loc HTTP/1.1\r\nHost: localhost\r\n"
                     . "Content-Type: application/octet-stream\r\n"
                     . "Transfer-Encoding: chunked\r\n"
                     . "Connection: close\r\n\r\n"
                     . sprintf("%x\r\n%s\r\n", length $first, $first));
    } else {
        send_raw($s, "PATCH $loc HTTP/1.1\r\nHost: localhost\r\n"
                     . "Content-Type: application/octet-stream\r\n"
                     . "Content-Range: 0-39\r\n"
                     . "Content-Length: 40\r\n"
                     . "Connection: close\r\n\r\n" . $first);
    }
    settle();

    my $log_before = length $t->error_log;

    # from another connection (and, with two workers, maybe another worker)
    my @deletes;
    for (1 .. ($o{tries} || 1)) {
        push @deletes, $t->req('DELETE', $loc);
    }

    is(join(' ', map { $_->{status} } @deletes),
       join(' ', (400) x @deletes), "$what: DELETE mid-PATCH: 400");
    is(join(' ', map { code($_) } @deletes),
       join(' ', ('BLOB_UPLOAD_INVALID') x @deletes),
       "$what: DELETE mid-PATCH: BLOB_UPLOAD_INVALID");
    like(detail($deletes[0]), qr/another request is writing to this upload/,
         "$what: DELETE mid-PATCH: says another request writes to it");
    ok(!answered($s), "$what: the PATCH is still waiting for its body");

    if ($o{chunked}) {
        send_raw($s, sprintf("%x\r\n%s\r\n0\r\n\r\n", length $second, $second));
    } else {
        send_raw($s, $second);
    }

    my $r = read_all($s);
    close $s;

    is($r && $r->{status}, 202, "$what: the PATCH ends in 202");
    is($r && $r->{headers}{range}, '0-39', "$what: the PATCH's Range 0-39");

    my $log = substr($t->error_log, $log_before);
    unlike($log, qr/\[(?:crit|alert|emerg)\]/, "$what: no [crit] in error.log");

    $r = $t->req('GET', $loc);
    is($r->{status}, 204, "$what: the session is still there");
    is($r->{headers}{range}, '0-39', "$what: with the PATCH's bytes");

    return $loc;
}

###############################################################################

my $t = RegTest->new();

my $loc = cancel_during($t, 'Content-Length', 'cancel/cl');

my $r = $t->req('DELETE', $loc);
is($r->{status}, 204, 'Content-Length: DELETE after the PATCH: 204');
$r = $t->req('GET', $loc);
is($r->{status}, 404, 'Content-Length: the session is gone');
is(code($r), 'BLOB_UPLOAD_UNKNOWN', 'Content-Length: BLOB_UPLOAD_UNKNOWN');

# chunked; the session is finished afterwards and its blob is whole

$loc = cancel_during($t, 'chunked', 'cancel/chunked', chunked => 1);

my $d = RegTest::digest($blob);
$r = $t->req('PUT', "$loc?digest=$d");
is($r->{status}, 201, 'chunked: PUT after the PATCH: 201');
$r = $t->req('GET', "/v2/cancel/chunked/blobs/$d");
is($r->{content}, $blob, 'chunked: the blob has both halves');
is($t->req('DELETE', $loc)->{status}, 404,
   'chunked: DELETE of the finished session: 404');

# a PUT carrying the last chunk while a DELETE comes in

$loc = start($t, 'cancel/put');
$t->req('PATCH', $loc, content => $first,
        headers => { 'Content-Range' => '0-19' });

my $s = connect_raw($t);
send_raw($s, "PUT $loc?digest=$d HTTP/1.1\r\nHost: localhost\r\n"
             . "Content-Type: application/octet-stream\r\n"
             . "Content-Range: 20-39\r\nContent-Length: 20\r\n"
             . "Connection: close\r\n\r\n" . substr($second, 0, 10));
settle();

my $log_before = length $t->error_log;
$r = $t->req('DELETE', $loc);
is($r->{status}, 400, 'PUT in flight: DELETE 400');
is(code($r), 'BLOB_UPLOAD_INVALID',
   'PUT in flight: DELETE BLOB_UPLOAD_INVALID');

send_raw($s, substr($second, 10));
$r = read_all($s);
close $s;
is($r && $r->{status}, 201, 'PUT in flight: the PUT ends in 201');
is($t->req('GET', "/v2/cancel/put/blobs/$d")->{content}, $blob,
   'PUT in flight: the blob is published whole');
unlike(substr($t->error_log, $log_before), qr/\[(?:crit|alert|emerg)\]/,
       'PUT in flight: no [crit] in error.log');

$t->stop;

###############################################################################
# two workers: whichever worker the DELETEs reach, the session is held

$t = RegTest->new(workers => 2);

$loc = cancel_during($t, 'two workers', 'cancel/workers', tries => 4);
$r = $t->req('DELETE', $loc);
is($r->{status}, 204, 'two workers: DELETE after the PATCH: 204');
is($t->req('GET', $loc)->{status}, 404, 'two workers: the session is gone');

$t->stop;
done_testing();
