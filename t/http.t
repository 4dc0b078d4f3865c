#!/usr/bin/perl

# HTTP-level behaviour of every route family: bodies of refused requests are
# discarded so keep-alive connections go on, Expect: 100-continue, slow and
# aborted clients.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use File::Find;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';

my $t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

$SIG{PIPE} = 'IGNORE';

# splits a raw reply into responses; @head tells which requests were HEAD

sub responses {
    my ($raw, @head) = @_;
    my @r;
    while ($raw =~ s{\AHTTP/1\.1 (\d{3})[^\r]*\r\n((?:[^\r]+\r\n)*)\r\n}{}) {
        my ($status, $h) = ($1, $2);
        my %h = map { lc($_->[0]) => $_->[1] }
                map { [ /^([^:]+):\s*(.*)$/ ] } split /\r\n/, $h;
        my $len = (shift(@head) || $status == 204 || $status == 304
                   || $status == 100) ? 0 : $h{'content-length'} // 0;
        if ($h{'transfer-encoding'} && $h{'transfer-encoding'} eq 'chunked'
            && $len == 0)
        {
            $len = 0;
            my $body = '';
            while ($raw =~ s/\A([0-9a-f]+)\r\n//i) {
                my $n = hex $1;
                $body .= substr($raw, 0, $n, '');
                $raw =~ s/\A\r\n//;
                last if $n == 0;
            }
            $raw =~ s/\A\r\n//;
            push @r, { status => $status, headers => \%h, body => $body };
            next;
        }
        push @r, { status => $status, headers => \%h,
                   body => substr($raw, 0, $len, '') };
    }
    push @r, { status => 'garbage', body => $raw } if length $raw;
    return @r;
}

sub statuses {
    return join ' ', map { $_->{status} } responses(@_);
}

# a refused request and a GET /v2/ on one connection: either the server
# closes the connection after the first response and says so, or the body
# was discarded and the GET is answered

sub check_pair {
    my ($raw, $status, $what) = @_;
    my @r = responses($raw);

    is($r[0]{status}, $status, "$what: status");

    if (@r == 1 && ($r[0]{headers}{connection} // '') =~ /close/i) {
        pass("$what: connection closed");
        return;
    }

    is(join(' ', map { $_->{status} } @r[1 .. $#r]), '200',
       "$what: next request on the connection");
}

sub connect_t {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                 Proto => 'tcp') || die "connect: $!";
}

# reads from $s until $re matches what was read or $timeout seconds pass

sub read_until {
    my ($s, $re, $timeout) = @_;
    my $buf = '';
    my $rin = '';
    vec($rin, fileno($s), 1) = 1;
    my $end = time + $timeout;
    while (time < $end && $buf !~ $re) {
        my $rout = $rin;
        last unless select($rout, undef, undef, 0.1) >= 0;
        next unless vec($rout, fileno($s), 1);
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    return $buf;
}

sub tmp_files {
    my @f;
    find(sub { push @f, $File::Find::name if -f }, "$v2/_ngx_tmp") if -d "$v2/_ngx_tmp";
    return @f;
}

my $img = $t->push_image('img', 'v1');
my $blob_d = $img->{layers}[0];
my $manifest = $img->{manifest};

my $r = $t->req('POST', '/v2/up/blobs/uploads/');
my $loc = $r->{headers}{location};
$t->req('PATCH', $loc, headers => { 'Content-Range' => '0-2' }, content => 'abc');

my $unknown = '/v2/up/blobs/uploads/0123abcd-0000-4000-8000-0123456789ab';
my $d0 = RegTest::digest('');
my $close = "GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

# a refused request with a body, then another request on the same connection

my @cases = (
    ['405, PUT /v2/', 405, "PUT /v2/ HTTP/1.1", 'x' x 100],
    ['bad name, monolithic', 400, "POST /v2/A/blobs/uploads/?digest=$d0 HTTP/1.1",
     'x' x 1000],
    ['bad digest, monolithic', 400,
     "POST /v2/up/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e HTTP/1.1",
     'x' x 1000],
    ['digest mismatch, monolithic', 400,
     "POST /v2/up/blobs/uploads/?digest=$d0 HTTP/1.1", 'x' x 1000],
    ['unknown upload, patch', 404, "PATCH $unknown HTTP/1.1", 'x' x 1000],
    ['unknown upload, put', 404, "PUT $unknown?digest=$d0 HTTP/1.1", 'x' x 1000],
    ['gap, patch', 416, "PATCH $loc HTTP/1.1\r\nContent-Range: 10-19", 'x' x 10],
    ['length disagrees, patch', 400, "PATCH $loc HTTP/1.1\r\nContent-Range: 3-100",
     'x' x 10],
    ['gap, put', 416, "PUT $loc?digest=$d0 HTTP/1.1\r\nContent-Range: 10-19",
     'x' x 10],
    ['bad name, manifest', 400, "PUT /v2/A/manifests/v1 HTTP/1.1\r\n"
     . "Content-Type: $OCI_M", $manifest],
    ['bad tag, manifest', 400, "PUT /v2/img/manifests/-v HTTP/1.1\r\n"
     . "Content-Type: $OCI_M", $manifest],
    ['bad digest, manifest', 400, "PUT /v2/img/manifests/sha256:00 HTTP/1.1\r\n"
     . "Content-Type: $OCI_M", $manifest],
    ['media type mismatch, manifest', 400, "PUT /v2/img/manifests/v2 HTTP/1.1\r\n"
     . "Content-Type: application/vnd.oci.image.index.v1+json", $manifest],
    ['too big, manifest', 413, "PUT /v2/img/manifests/v2 HTTP/1.1\r\n"
     . "Content-Type: $OCI_M", ' ' x (5 * 1024 * 1024) . $manifest],
    ['get with a body', 200, "GET /v2/img/manifests/v1 HTTP/1.1", 'x' x 100],
    ['delete off with a body', 405, "DELETE /v2/img/blobs/$blob_d HTTP/1.1",
     'x' x 100],
);

for my $c (@cases) {
    my ($what, $status, $head, $body) = @$c;

    my $req = "$head\r\nHost: localhost\r\nContent-Length: " . length($body)
              . "\r\n\r\n$body";
    check_pair($t->raw($req . $close), $status, "$what, keep-alive");

    # the same in chunked transfer encoding

    my $chunked = "$head\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                  . join('', map { sprintf("%x\r\n%s\r\n", length, $_) }
                             unpack '(a40000)*', $body)
                  . "0\r\n\r\n";
    check_pair($t->raw($chunked . $close), $status, "$what, chunked, keep-alive");
}

# keep-alive with successful requests of each kind

my $b1 = 'keep-alive blob';
my $b1d = RegTest::digest($b1);
my $raw = $t->raw(
    "POST /v2/ka/blobs/uploads/?digest=$b1d HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Length: " . length($b1) . "\r\n\r\n$b1"
    . "GET /v2/ka/blobs/$b1d HTTP/1.1\r\nHost: localhost\r\n\r\n"
    . "HEAD /v2/ka/blobs/$b1d HTTP/1.1\r\nHost: localhost\r\n\r\n"
    . "POST /v2/ka/blobs/uploads/ HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Length: 0\r\n\r\n"
    . "GET /v2/img/tags/list HTTP/1.1\r\nHost: localhost\r\n\r\n"
    . "GET /v2/_catalog HTTP/1.1\r\nHost: localhost\r\n\r\n"
    . "HEAD /v2/img/manifests/v1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    . "GET /v2/img/manifests/v1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    . $close);
my @r = responses($raw, 0, 0, 1, 0, 0, 0, 1, 0, 0);
is(join(' ', map { $_->{status} } @r), '201 200 200 202 200 200 200 200 200',
   'pipelined requests');
is($r[1]{body}, $b1, 'pipelined blob body');
is($r[2]{headers}{'content-length'}, length $b1, 'pipelined blob head');
like($r[4]{body}, qr/"v1"/, 'pipelined tags list');
like($r[5]{body}, qr/"repositories"/, 'pipelined catalog');
is($r[7]{body}, $manifest, 'pipelined manifest body');
is($r[8]{body}, '{}', 'pipelined base');

# HEAD sends no body

for my $p ('/v2/', "/v2/img/blobs/$blob_d", '/v2/img/manifests/v1',
           "/v2/img/blobs/$d0", '/v2/img/manifests/nosuch', '/v2/A/tags/list')
{
    $raw = $t->raw("HEAD $p HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    like($raw, qr/\r\n\r\n\z/, "HEAD $p: no body");
    like($raw, qr/\r\nDocker-Distribution-Api-Version: registry\/2\.0\r\n/i,
         "HEAD $p: api version");
}

# Expect: 100-continue

for my $c (['patch', "PATCH $loc HTTP/1.1\r\nContent-Range: 3-5", 'def', 202],
           ['monolithic', "POST /v2/up/blobs/uploads/?digest="
            . RegTest::digest('expect') . " HTTP/1.1", 'expect', 201],
           ['manifest', "PUT /v2/img/manifests/expect HTTP/1.1\r\n"
            . "Content-Type: $OCI_M", $manifest, 201])
{
    my ($what, $head, $body, $status) = @$c;

    my $s = connect_t();
    print $s "$head\r\nHost: localhost\r\nExpect: 100-continue\r\n"
             . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n";
    my $got = read_until($s, qr/\r\n\r\n/, 3);
    like($got, qr{^HTTP/1\.1 100 Continue\r\n\r\n\z}, "expect: 100 continue, $what");
    print $s $body;
    $got = read_until($s, qr/\r\n\r\n/, 10);
    like($got, qr{^HTTP/1\.1 $status }, "expect: final status, $what");
    close $s;
}

# slow clients: bodies in several pieces with pauses

for my $c (['patch', "PATCH $loc HTTP/1.1\r\nContent-Range: 6-29",
            '0123456789abcdefghijklmn', 202],
           ['monolithic', "POST /v2/up/blobs/uploads/?digest="
            . RegTest::digest('a slowly sent blob, piece by piece') . " HTTP/1.1",
            'a slowly sent blob, piece by piece', 201],
           ['manifest', "PUT /v2/img/manifests/slow HTTP/1.1\r\n"
            . "Content-Type: $OCI_M", $manifest, 201])
{
    my ($what, $head, $body, $status) = @$c;

    my $s = connect_t();
    print $s "$head\r\nHost: localhost\r\nContent-Length: " . length($body)
             . "\r\nConnection: close\r\n\r\n";
    for my $piece (unpack '(a' . int(length($body) / 3 + 1) . ')*', $body) {
        select undef, undef, undef, 0.15;
        print $s $piece;
    }
    my $got = read_until($s, qr/\r\n\r\n/, 10);
    like($got, qr{^HTTP/1\.1 $status }, "slow client, $what");
    close $s;
}

is($t->req('GET', '/v2/img/manifests/slow')->{content}, $manifest,
   'slow manifest stored exactly');
is($t->req('GET', $loc)->{headers}{range}, '0-29', 'slow patch offset');

# aborted clients

my $full = join '', map { sprintf "%07d\n", $_ } 1 .. 20000;   # 160000 bytes
my $full_d = RegTest::digest($full);

$r = $t->req('POST', '/v2/abort/blobs/uploads/');
my $aloc = $r->{headers}{location};

my $s = connect_t();
print $s "PATCH $aloc HTTP/1.1\r\nHost: localhost\r\n"
         . "Content-Length: " . length($full) . "\r\n\r\n"
         . substr($full, 0, 70000);
select undef, undef, undef, 0.3;
close $s;
select undef, undef, undef, 0.3;

$r = $t->req('GET', $aloc);
is($r->{status}, 204, 'upload alive after an aborted patch');
my ($end) = ($r->{headers}{range} // '') =~ /^0-(\d+)$/;
ok(defined $end, 'upload range after an aborted patch');
my $off = $r->{headers}{range} eq '0-0' ? 0 : $end + 1;
ok($off <= 70000, 'no more than was sent');

$r = $t->req('PATCH', $aloc,
             headers => { 'Content-Range' => "$off-" . (length($full) - 1) },
             content => substr($full, $off));
is($r->{status}, 202, 'resume after an aborted patch');
$r = $t->req('PUT', "$aloc?digest=$full_d");
is($r->{status}, 201, 'data consistent after an aborted patch');
ok($t->req('GET', "/v2/abort/blobs/$full_d")->{content} eq $full,
   'aborted and resumed upload read back');

# aborted streamed patch

$r = $t->req('POST', '/v2/abort/blobs/uploads/');
$aloc = $r->{headers}{location};
$s = connect_t();
print $s "PATCH $aloc HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         . sprintf("%x\r\n%s\r\n", 50000, substr($full, 0, 50000))
         . sprintf("%x\r\n", 50000) . substr($full, 50000, 1000);
select undef, undef, undef, 0.3;
close $s;
select undef, undef, undef, 0.3;

$r = $t->req('GET', $aloc);
is($r->{status}, 204, 'upload alive after an aborted streamed patch');
($end) = ($r->{headers}{range} // '') =~ /^0-(\d+)$/;
$off = ($r->{headers}{range} // '') eq '0-0' ? 0 : ($end // 0) + 1;
$r = $t->req('PATCH', $aloc,
             headers => { 'Content-Range' => "$off-" . (length($full) - 1) },
             content => substr($full, $off));
is($r->{status}, 202, 'resume after an aborted streamed patch');
is($t->req('PUT', "$aloc?digest=$full_d")->{status}, 201,
   'data consistent after an aborted streamed patch');

# aborted monolithic push and manifest push: nothing published

my $other = $full . 'x';
my $other_d = RegTest::digest($other);

$s = connect_t();
print $s "POST /v2/abort/blobs/uploads/?digest=$other_d HTTP/1.1\r\nHost: localhost\r\n"
         . "Content-Length: " . length($other) . "\r\n\r\n" . substr($other, 0, 70000);
select undef, undef, undef, 0.3;
close $s;

$s = connect_t();
print $s "PUT /v2/img/manifests/aborted HTTP/1.1\r\nHost: localhost\r\n"
         . "Content-Type: $OCI_M\r\nContent-Length: " . length($manifest) . "\r\n\r\n"
         . substr($manifest, 0, 100);
select undef, undef, undef, 0.3;
close $s;

select undef, undef, undef, 0.5;

is($t->req('GET', "/v2/abort/blobs/$other_d")->{status}, 404,
   'aborted monolithic push published nothing');
(my $ohex = $other_d) =~ s/^sha256://;
ok(!-e "$v2/blobs/sha256/" . substr($ohex, 0, 2) . "/$ohex", 'no blob directory');
is($t->req('GET', '/v2/img/manifests/aborted')->{status}, 404,
   'aborted manifest push tagged nothing');

# a client that goes away while downloading

my $big = 'z' x (8 * 1024 * 1024);
my $big_d = $t->push_blob('abort', $big);
for (1 .. 3) {
    $s = connect_t();
    print $s "GET /v2/abort/blobs/$big_d HTTP/1.1\r\nHost: localhost\r\n\r\n";
    sysread($s, my $buf, 1000);
    close $s;
}
is($t->req('GET', "/v2/abort/blobs/$big_d", headers => { Range => 'bytes=0-9' })
   ->{content}, 'z' x 10, 'serving after aborted downloads');

is(join(' ', tmp_files()), '', 'no temporary files left after aborted requests');

$r = $t->req('GET', '/v2/');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'still serving');

$t->stop();

done_testing();
