#!/usr/bin/perl

# Blob upload bodies that disagree with what their headers declare: a body
# shorter than Content-Length (the client gives up), Content-Range against
# Content-Length, chunked bodies shorter or longer than their Content-Range,
# a PUT whose bytes do not hash to its digest.  After each: nothing is
# published (no new file under blobs/, no layer link, the blob GET and HEAD
# answer 404), an upload session keeps its offset, and the connection is
# either closed or still in step (a second request on it gets its own
# answer, not one for leftover body bytes).
#
# Where it matters the ?digest= names the bytes actually sent, so a server
# that took a cut body for a whole one would publish it.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256);
use File::Find;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SHUT_WR);

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

$SIG{PIPE} = 'IGNORE';

my $t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

# reproducible incompressible bytes

sub bytes_of {
    my ($n, $seed) = @_;
    my ($s, $h) = ('', "body_length $seed");
    while (length $s < $n) {
        $h = sha256($h);
        $s .= $h;
    }
    return substr($s, 0, $n);
}

# binary bodies compared by length and digest, which a failure prints

sub is_bytes {
    my ($got, $want, $name) = @_;
    my $show = sub {
        defined $_[0] ? length($_[0]) . ' bytes ' . RegTest::digest($_[0])
                      : 'undef'
    };
    is($show->($got), $show->($want), $name);
}

sub blob_files {
    my @f;
    find(sub { push @f, $File::Find::name if -f }, "$v2/blobs") if -d "$v2/blobs";
    return join "\n", sort @f;
}

# nothing of @digests is in the store or served, and blobs/ is as before

sub nothing_published {
    my ($name, $repo, $before, @digests) = @_;

    is(blob_files(), $before, "$name: no new file under blobs/");

    for my $d (@digests) {
        ok(!-e $t->blob_path($d), "$name: no blob data for $d");
        ok(!-e $t->layer_link($repo, $d), "$name: no layer link for $d");
        my $r = $t->req('GET', "/v2/$repo/blobs/$d");
        is($r->{status}, 404, "$name: GET $d is 404");
        is(RegTest::error_code($r), 'BLOB_UNKNOWN', "$name: GET $d is BLOB_UNKNOWN");
        is($t->req('HEAD', "/v2/$repo/blobs/$d")->{status}, 404,
           "$name: HEAD $d is 404");
    }
}

sub start_upload {
    my ($repo) = @_;
    my $r = $t->req('POST', "/v2/$repo/blobs/uploads/");
    die "start upload: $r->{status}\n" unless $r->{status} == 202;
    return $r->{headers}{location};
}

# the Range header of GET <session>, or "status N" when not 204

sub session_range {
    my ($loc) = @_;
    my $r = $t->req('GET', $loc);
    return "status $r->{status}" unless $r->{status} == 204;
    return $r->{headers}{range} // 'no Range header';
}

# A request the client cut short leaves its session locked until the
# server has cut the session's data back to the saved offset, which it does
# in a thread after the connection is gone: a request in the meantime gets
# 400 BLOB_UPLOAD_INVALID "another request is writing to this upload".
# Waits (up to 10 s) until an empty PATCH is taken again, the session's
# offset unchanged by it.

sub session_free {
    my ($loc, $name) = @_;
    my $r;

    for (1 .. 100) {
        $r = $t->req('PATCH', $loc, content => '');
        last unless $r->{status} == 400
                    && $r->{content} =~ /another request is writing/;
        select undef, undef, undef, 0.1;
    }

    is($r->{status}, 202, "$name: the session takes requests again")
        or diag($r->{content});
}

sub uploads_left {
    my ($repo) = @_;
    my $dir = "$v2/repositories/$repo/_uploads";
    opendir(my $dh, $dir) or return '';
    my @e = grep { !/^\.\.?$/ } readdir $dh;
    return join ' ', sort @e;
}

###############################################################################
# a raw HTTP/1.1 client: one connection, several requests

my %pending;    # socket -> bytes read past the last response
my $why;        # why the last read_response() returned no response

sub connect_raw {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!\n";
    $s->autoflush(1);
    binmode $s;
    $pending{$s} = '';
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

# more bytes into $pending{$s}; 0 on EOF, reset or timeout, $why says which

sub fill {
    my ($s, $timeout) = @_;

    unless (IO::Select->new($s)->can_read($timeout)) {
        $why = "nothing within $timeout s";
        return 0;
    }

    my $n = sysread($s, my $buf, 65536);

    if (!defined $n) {
        $why = "reset ($!)";
        return 0;
    }

    if ($n == 0) {
        $why = length $pending{$s} ? 'closed in the middle of a response'
                                   : 'closed';
        return 0;
    }

    $pending{$s} .= $buf;
    return 1;
}

# one response: { status, headers (lower-case), content }, or undef when the
# connection ends (or nothing comes within 10 s) before a whole response, or
# what comes is no HTTP response; $why then says which: "closed" is a
# connection closed before any byte of a response

sub read_response {
    my ($s, $method) = @_;

    $why = undef;

    while ($pending{$s} !~ /\r\n\r\n/) {
        fill($s, 10) or return;
    }

    my ($head, $rest) = split /\r\n\r\n/, $pending{$s}, 2;
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3}) };

    unless (defined $status) {
        $why = 'not an HTTP response: ' . substr($head, 0, 60);
        return;
    }
    my %h;
    for my $line (split /\r\n/, $head) {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*?)\s*$/;
    }

    my $body = '';

    if (($method // '') eq 'HEAD' || $status == 204 || $status == 304
        || $status < 200)
    {
        $pending{$s} = $rest;

    } elsif (defined $h{'content-length'}) {
        my $cl = $h{'content-length'};
        $pending{$s} = $rest;
        while (length $pending{$s} < $cl) {
            fill($s, 10) or return;
        }
        $body = substr($pending{$s}, 0, $cl);
        $pending{$s} = substr($pending{$s}, $cl);

    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        $pending{$s} = $rest;
        while (1) {
            while ($pending{$s} !~ /\r\n/) { fill($s, 10) or return }
            my ($size) = $pending{$s} =~ /^([0-9a-fA-F]+)/ or return;
            $size = hex $size;
            my $need = index($pending{$s}, "\r\n") + 2 + $size + 2;
            while (length $pending{$s} < $need) { fill($s, 10) or return }
            $body .= substr($pending{$s}, index($pending{$s}, "\r\n") + 2, $size);
            $pending{$s} = substr($pending{$s}, $need);
            last if $size == 0;
        }

    } else {
        $pending{$s} = $rest;
        1 while fill($s, 10);
        return if $why =~ /^nothing/;     # a body that never ends
        $body = $pending{$s};
        $pending{$s} = '';
    }

    return { status => $status, headers => \%h, content => $body };
}

# after an error answer on $s: a second request on the same connection is
# answered in step (GET /v2/ -> 200 {}), or the server has closed it

sub follow_up {
    my ($s, $name) = @_;

    my $sent = send_raw($s, "GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
    my $r = $sent ? read_response($s, 'GET') : undef;

    # closed: the server's FIN, or its RST for the request it did not read;
    # a hang or a reply that is no HTTP response fails

    if (!$r) {
        like($sent ? $why : "send failed ($!)",
             qr/^(?:closed|reset|send failed)\b/,
             "$name: no second answer: the connection was closed");
        return;
    }

    is("$r->{status} $r->{content}", '200 {}',
       "$name: the next request on the connection gets its own answer");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$name: the next answer: api version");

    fill($s, 0.3);
    is($pending{$s}, '', "$name: nothing else arrives on the connection");
}

sub request_head {
    my ($method, $uri, %h) = @_;
    my $head = "$method $uri HTTP/1.1\r\nHost: localhost\r\n";
    $head .= "$_: $h{$_}\r\n" for sort keys %h;
    return "$head\r\n";
}

sub chunked {
    return join('', map { sprintf("%x\r\n", length $_) . "$_\r\n" } @_)
        . "0\r\n\r\n";
}

# an error answer of the upload API: status among @$statuses, code among
# @$codes, the API version header

sub check_error_in {
    my ($r, $statuses, $codes, $name) = @_;
    ok($r, "$name: an answer") or return diag("no answer: $why");
    my $st = $r->{status};
    ok(scalar(grep { $_ == $st } @$statuses),
       "$name: status $st is one of @$statuses");
    my $code = RegTest::error_code($r);
    ok(scalar(grep { $_ eq $code } @$codes),
       "$name: code '$code' is one of @$codes");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$name: api version");
}

# what the client that gives up sees: nginx takes a client that closes its
# side before the whole body for gone (c->error) and closes the connection
# without an answer; never a success, an error answer it cannot read in
# full, a hang or a garbled reply

sub cut_answer_ok {
    my ($r, $name) = @_;
    is($r ? "answer $r->{status}" : $why, 'closed',
       "$name: the connection closed without an answer");
}

# _uploads/ of $repo empties (the monolithic session is dropped when its
# request ends; allow the worker a moment after the socket is closed)

sub no_uploads_left {
    my ($repo, $name) = @_;
    my $left = uploads_left($repo);
    for (1 .. 40) {
        last if $left eq '';
        select undef, undef, undef, 0.05;
        $left = uploads_left($repo);
    }
    is($left, '', "$name: no upload left behind");
}

my ($r, $s, $before, $loc);

###############################################################################
# 1. monolithic POST ?digest=, Content-Length larger than what is sent, the
# client closes its side

{
    my $whole = bytes_of(65536, 1);
    my $sent = substr($whole, 0, 30000);

    for my $case (['digest of the whole body', RegTest::digest($whole)],
                  ['digest of the bytes sent', RegTest::digest($sent)])
    {
        my ($what, $d) = @$case;
        my $name = "monolithic POST cut short, $what";

        $before = blob_files();
        $s = connect_raw();
        send_raw($s, request_head('POST', "/v2/lib/cut/blobs/uploads/?digest=$d",
                                  'Content-Type' => 'application/octet-stream',
                                  'Content-Length' => length $whole)
                     . $sent);
        shutdown($s, SHUT_WR);
        $r = read_response($s, 'POST');
        close $s;

        cut_answer_ok($r, $name);
        nothing_published($name, 'lib/cut', $before,
                          RegTest::digest($whole), RegTest::digest($sent));
        no_uploads_left('lib/cut', $name);
    }

    # the same with a chunked body that never gets its last chunk

    for my $case (['digest of the whole body', RegTest::digest($whole)],
                  ['digest of the bytes sent', RegTest::digest($sent)])
    {
        my ($what, $d) = @$case;
        my $name = "chunked monolithic POST cut short, $what";

        $before = blob_files();
        $s = connect_raw();
        my $body = chunked(substr($sent, 0, 10000), substr($sent, 10000));
        $body =~ s/0\r\n\r\n\z//;               # no last chunk
        send_raw($s, request_head('POST', "/v2/lib/cut/blobs/uploads/?digest=$d",
                                  'Transfer-Encoding' => 'chunked')
                     . $body);
        shutdown($s, SHUT_WR);
        $r = read_response($s, 'POST');
        close $s;

        cut_answer_ok($r, $name);
        nothing_published($name, 'lib/cut', $before,
                          RegTest::digest($whole), RegTest::digest($sent));
        no_uploads_left('lib/cut', $name);
    }

    # the repository works: the whole body pushes

    $r = $t->req('POST', '/v2/lib/cut/blobs/uploads/?digest='
                 . RegTest::digest($whole), content => $whole);
    is($r->{status}, 201, 'after the cut pushes: the whole body pushes');
    is_bytes($t->req('GET', '/v2/lib/cut/blobs/' . RegTest::digest($whole))
             ->{content}, $whole, 'after the cut pushes: read back');
}

###############################################################################
# 2. a session: PATCH and PUT cut short by the client; the cut chunk is
# lost, the session stays at its last complete chunk, and goes on

{
    my $blob = bytes_of(3000, 2);
    my $name = 'session';
    $loc = start_upload('lib/sess');

    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '0-999' },
                 content => substr($blob, 0, 1000));
    is($r->{status}, 202, "$name: first chunk");
    is(session_range($loc), '0-999', "$name: at 0-999");

    # PATCH with Content-Length 2000, 700 bytes sent, closed

    $before = blob_files();
    $s = connect_raw();
    send_raw($s, request_head('PATCH', $loc, 'Content-Range' => '1000-2999',
                              'Content-Length' => 2000)
                 . substr($blob, 1000, 700));
    shutdown($s, SHUT_WR);
    $r = read_response($s, 'PATCH');
    close $s;

    cut_answer_ok($r, "$name: PATCH cut short");
    session_free($loc, "$name: PATCH cut short");
    is(session_range($loc), '0-999', "$name: PATCH cut short: offset unchanged");

    # PUT with the rest as its body, cut short; its digest names the bytes
    # that did arrive

    my $arrived = substr($blob, 0, 1000) . substr($blob, 1000, 500);
    $s = connect_raw();
    send_raw($s, request_head('PUT', "$loc?digest=" . RegTest::digest($arrived),
                              'Content-Range' => '1000-2999',
                              'Content-Length' => 2000)
                 . substr($blob, 1000, 500));
    shutdown($s, SHUT_WR);
    $r = read_response($s, 'PUT');
    close $s;

    cut_answer_ok($r, "$name: PUT cut short");
    session_free($loc, "$name: PUT cut short");
    nothing_published("$name: PUT cut short", 'lib/sess', $before,
                      RegTest::digest($arrived), RegTest::digest($blob));
    is(session_range($loc), '0-999', "$name: PUT cut short: offset unchanged");

    # the same without Content-Range (a plain final body)

    $s = connect_raw();
    send_raw($s, request_head('PUT', "$loc?digest=" . RegTest::digest($arrived),
                              'Content-Length' => 2000)
                 . substr($blob, 1000, 500));
    shutdown($s, SHUT_WR);
    $r = read_response($s, 'PUT');
    close $s;

    cut_answer_ok($r, "$name: PUT without Content-Range cut short");
    session_free($loc, "$name: PUT without Content-Range cut short");
    nothing_published("$name: PUT without Content-Range cut short", 'lib/sess',
                      $before, RegTest::digest($arrived));
    is(session_range($loc), '0-999',
       "$name: PUT without Content-Range cut short: offset unchanged");

    # re-sent from the offset, the upload completes with the right bytes

    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '1000-2999' },
                 content => substr($blob, 1000));
    is($r->{status}, 202, "$name: chunk re-sent");
    is($r->{headers}{range}, '0-2999', "$name: chunk re-sent: range");

    my $d = RegTest::digest($blob);
    $r = $t->req('PUT', "$loc?digest=$d");
    is($r->{status}, 201, "$name: completed");
    is_bytes($t->req('GET', "/v2/lib/sess/blobs/$d")->{content}, $blob,
             "$name: completed: exact bytes");
}

###############################################################################
# 3. PUT with Content-Length 10 and Content-Range 0-19 (and the reverse)

for my $case (['Content-Length 10, Content-Range 0-19', 10, '0-19'],
              ['Content-Length 20, Content-Range 0-9', 20, '0-9'])
{
    my ($what, $cl, $cr) = @$case;
    my $name = "PUT $what";
    my $body = bytes_of($cl, "put $cl");

    $loc = start_upload('lib/put');
    $before = blob_files();

    $s = connect_raw();
    send_raw($s, request_head('PUT', "$loc?digest=" . RegTest::digest($body),
                              'Content-Range' => $cr,
                              'Content-Length' => $cl,
                              'Content-Type' => 'application/octet-stream')
                 . $body);
    $r = read_response($s, 'PUT');

    check_error_in($r, [400, 416], ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID'],
                   $name);
    follow_up($s, $name);
    close $s;

    nothing_published($name, 'lib/put', $before, RegTest::digest($body),
                      RegTest::digest(substr($body, 0, 10)));
    is(session_range($loc), '0-0', "$name: session still at 0");
}

###############################################################################
# 4. PATCH with a Content-Range whose length is not the Content-Length

{
    my $blob = bytes_of(100, 4);
    $loc = start_upload('lib/patch');

    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '0-9' },
                 content => substr($blob, 0, 10));
    is($r->{status}, 202, 'PATCH mismatch: first chunk');

    for my $case (['range longer than the body', '10-29', 10],
                  ['range shorter than the body', '10-14', 10],
                  ['range of one byte, body of 50', '10-10', 50])
    {
        my ($what, $cr, $n) = @$case;
        my $name = "PATCH $what";

        $s = connect_raw();
        send_raw($s, request_head('PATCH', $loc, 'Content-Range' => $cr,
                                  'Content-Length' => $n)
                     . substr($blob, 10, $n));
        $r = read_response($s, 'PATCH');

        check_error_in($r, [400, 416], ['BLOB_UPLOAD_INVALID'], $name);
        follow_up($s, $name);
        close $s;

        is(session_range($loc), '0-9', "$name: offset unchanged");
    }

    # the session goes on from where it was

    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '10-99' },
                 content => substr($blob, 10));
    is($r->{status}, 202, 'PATCH mismatch: the right chunk after them');
    my $d = RegTest::digest($blob);
    $r = $t->req('PUT', "$loc?digest=$d");
    is($r->{status}, 201, 'PATCH mismatch: completed');
    is_bytes($t->req('GET', "/v2/lib/patch/blobs/$d")->{content}, $blob,
             'PATCH mismatch: exact bytes');
}

###############################################################################
# 5. chunked transfer encoding against Content-Range 0-99

{
    my $blob = bytes_of(150, 5);
    $loc = start_upload('lib/te');
    $before = blob_files();

    for my $case (['50 bytes for 0-99', [substr($blob, 0, 25), substr($blob, 25, 25)], 0],
                  ['150 bytes for 0-99', [substr($blob, 0, 150)], 0],
                  ['150 bytes for 0-99, the first 100 alone first',
                   [substr($blob, 0, 100), substr($blob, 100, 50)], 1])
    {
        my ($what, $chunks, $pause) = @$case;
        my $name = "chunked PATCH $what";

        $s = connect_raw();
        my $body = chunked(@$chunks);

        if ($pause) {
            # the first chunk alone, so the server has it before the rest
            my $first = sprintf("%x\r\n", length $chunks->[0]) . "$chunks->[0]\r\n";
            send_raw($s, request_head('PATCH', $loc, 'Content-Range' => '0-99',
                                      'Transfer-Encoding' => 'chunked')
                         . $first);
            select undef, undef, undef, 0.3;
            send_raw($s, substr($body, length $first));
        } else {
            send_raw($s, request_head('PATCH', $loc, 'Content-Range' => '0-99',
                                      'Transfer-Encoding' => 'chunked')
                         . $body);
        }

        $r = read_response($s, 'PATCH');
        check_error_in($r, [400, 416], ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID'],
                       $name);
        follow_up($s, $name);
        close $s;

        is(session_range($loc), '0-0', "$name: offset stays 0");
    }

    # the bytes written by the rejected bodies do not show in the blob

    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '0-99' },
                 content => substr($blob, 100, 50) . substr($blob, 0, 50));
    is($r->{status}, 202, 'chunked PATCH: then a right chunk');
    is($r->{headers}{range}, '0-99', 'chunked PATCH: then a right chunk: range');

    my $want = substr($blob, 100, 50) . substr($blob, 0, 50);
    my $d = RegTest::digest($want);
    $r = $t->req('PUT', "$loc?digest=$d");
    is($r->{status}, 201, 'chunked PATCH: completed');
    is_bytes($t->req('GET', "/v2/lib/te/blobs/$d")->{content}, $want,
             'chunked PATCH: completed with exactly the accepted bytes');
}

# a chunked PUT body against its Content-Range: nothing published, even with
# the digest of the bytes sent

for my $case (['50 bytes for 0-99', 50], ['150 bytes for 0-99', 150]) {
    my ($what, $n) = @$case;
    my $name = "chunked PUT $what";
    my $body = bytes_of($n, "put te $n");

    $loc = start_upload('lib/te');
    $before = blob_files();

    $s = connect_raw();
    send_raw($s, request_head('PUT', "$loc?digest=" . RegTest::digest($body),
                              'Content-Range' => '0-99',
                              'Transfer-Encoding' => 'chunked')
                 . chunked(unpack '(a40)*', $body));
    $r = read_response($s, 'PUT');

    check_error_in($r, [400, 416], ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID'], $name);
    follow_up($s, $name);
    close $s;

    nothing_published($name, 'lib/te', $before, RegTest::digest($body),
                      RegTest::digest(substr($body, 0, 100)));
    is(session_range($loc), '0-0', "$name: offset stays 0");
}

###############################################################################
# 6. PUT whose bytes do not hash to its digest

{
    my $blob = bytes_of(5000, 6);
    my $wrong = RegTest::digest('not these bytes');

    for my $case (['body in the PUT', 0], ['chunked body in the PUT', 1],
                  ['data sent by PATCH', 2])
    {
        my ($what, $how) = @$case;
        my $name = "PUT with a wrong digest, $what";

        $loc = start_upload('lib/wrong');

        if ($how == 2) {
            $r = $t->req('PATCH', $loc, content => $blob);
            is($r->{status}, 202, "$name: PATCH");
        }

        $before = blob_files();
        $s = connect_raw();

        if ($how == 0) {
            send_raw($s, request_head('PUT', "$loc?digest=$wrong",
                                      'Content-Length' => length $blob)
                         . $blob);
        } elsif ($how == 1) {
            send_raw($s, request_head('PUT', "$loc?digest=$wrong",
                                      'Transfer-Encoding' => 'chunked')
                         . chunked(unpack '(a1500)*', $blob));
        } else {
            send_raw($s, request_head('PUT', "$loc?digest=$wrong",
                                      'Content-Length' => 0));
        }

        $r = read_response($s, 'PUT');
        check_error_in($r, [400], ['DIGEST_INVALID'], $name);
        follow_up($s, $name);
        close $s;

        nothing_published($name, 'lib/wrong', $before, $wrong,
                          RegTest::digest($blob));
    }
}

$t->stop();

done_testing();
