#!/usr/bin/perl

# Range requests on blobs, beyond t/blob_get.t: every single-range shape,
# multipart/byteranges (parsed part by part), overlapping and reversed
# ranges, the 416 answer (JSON, Content-Range: bytes */<size>), If-Range
# with the ETag and with a date, If-None-Match, HEAD, HTTP/1.0, and a Range
# on a manifest.  Blob GETs are nginx's static file path, so the rules are
# those of nginx's range filter (1.22):
#   - reversed ranges ("5-2") are dropped; none left -> 416;
#   - ranges past the end are clipped, a suffix longer than the blob is the
#     whole blob;
#   - several ranges are served as asked, not merged, unless their total
#     length exceeds the blob's: then the range header is ignored (200);
#   - If-Range: a strong ETag compare, or a date equal to Last-Modified.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256 sha512_hex);
use POSIX ();
use Time::Local qw(timegm);

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $t = RegTest->new();

# ~100 KiB of incompressible, reproducible bytes: a SHA-256 chain

my $blob = '';
{
    my $h = 'range.t';
    while (length($blob) < 100 * 1024) {
        $h = sha256($h);
        $blob .= $h;
    }
}
my $len = length $blob;       # 102400
my $last = $len - 1;

# binary bodies compared by length and digest, which a failure prints

sub is_bytes {
    my ($got, $want, $name) = @_;
    my $show = sub {
        defined $_[0] ? length($_[0]) . ' bytes ' . RegTest::digest($_[0])
                      : 'undef'
    };
    is($show->($got), $show->($want), $name);
}

my $d = $t->push_blob('lib/range', $blob);
my $path = "/v2/lib/range/blobs/$d";

sub get {
    my ($range, %h) = @_;
    return $t->req('GET', $path,
                   headers => { defined $range ? (Range => $range) : (), %h });
}

sub head {
    my ($range, %h) = @_;
    return $t->req('HEAD', $path,
                   headers => { defined $range ? (Range => $range) : (), %h });
}

# one 206 with a single range: status, Content-Range, Content-Length, bytes

sub check_single {
    my ($r, $start, $end, $name) = @_;
    is($r->{status}, 206, "$name: 206");
    is($r->{headers}{'content-range'}, "bytes $start-$end/$len",
       "$name: content-range");
    is($r->{headers}{'content-length'}, $end - $start + 1,
       "$name: content-length");
    is_bytes($r->{content}, substr($blob, $start, $end - $start + 1),
       "$name: bytes");
    is($r->{headers}{'content-type'}, 'application/octet-stream',
       "$name: content-type");
    is($r->{headers}{'etag'}, qq{"$d"}, "$name: etag");
}

# one 200 with the whole blob

sub check_full {
    my ($r, $name) = @_;
    is($r->{status}, 200, "$name: 200");
    is_bytes($r->{content}, $blob, "$name: whole blob");
    is($r->{headers}{'content-length'}, $len, "$name: content-length");
    is($r->{headers}{'content-range'}, undef, "$name: no content-range");
}

# 416: Content-Range: bytes */<size>, and (GET) a JSON error SIZE_INVALID

sub check_416 {
    my ($r, $name, $head) = @_;
    is($r->{status}, 416, "$name: 416");
    is($r->{headers}{'content-range'}, "bytes */$len", "$name: content-range");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$name: api version");

    if ($head) {
        is($r->{content}, '', "$name: no body");
        return;
    }

    like($r->{headers}{'content-type'} // '', qr{^application/json\b},
         "$name: JSON content-type");
    is(RegTest::error_code($r), 'SIZE_INVALID', "$name: code SIZE_INVALID");
    is($r->{headers}{'content-length'}, length $r->{content},
       "$name: content-length matches the body");
}

# multipart/byteranges: the parts, each { type, range, data }; undef when the
# body is not a well-formed multipart for the boundary of $ctype

sub parse_multipart {
    my ($ctype, $body) = @_;

    my ($b) = ($ctype // '') =~ m{^multipart/byteranges;\s*boundary="?([^";\s]+)"?}
        or return;

    # delimiters are CRLF "--" boundary; the first may open the body

    my @chunks = split /(?:\A|\r\n)--\Q$b\E/, $body, -1;

    my $pre = shift @chunks;
    return unless defined $pre && $pre eq '';

    my $close = pop @chunks;
    return unless defined $close && $close =~ /\A--(?:\r\n)?\z/;

    my @parts;

    for my $c (@chunks) {
        my ($hdr, $data) = $c =~ /\A\r\n(.*?)\r\n\r\n(.*)\z/s or return;
        my %h;
        for my $line (split /\r\n/, $hdr) {
            my ($k, $v) = $line =~ /^([^:]+):\s*(.*)$/ or return;
            $h{lc $k} = $v;
        }
        push @parts, { type => $h{'content-type'},
                       range => $h{'content-range'}, data => $data };
    }

    return \@parts;
}

sub check_multipart {
    my ($r, $ranges, $name) = @_;

    is($r->{status}, 206, "$name: 206");
    like($r->{headers}{'content-type'} // '',
         qr{^multipart/byteranges;\s*boundary=}, "$name: multipart type");
    is($r->{headers}{'content-range'}, undef,
       "$name: no top-level content-range");
    is($r->{headers}{'content-length'}, length $r->{content},
       "$name: content-length matches the body");

    my $parts = parse_multipart($r->{headers}{'content-type'}, $r->{content});
    ok($parts, "$name: well-formed multipart body") or return;
    is(scalar @$parts, scalar @$ranges, "$name: one part per range");

    for my $i (0 .. $#$ranges) {
        my ($s, $e) = @{ $ranges->[$i] };
        my $p = $parts->[$i] || {};
        is($p->{range}, "bytes $s-$e/$len", "$name: part $i content-range");
        is($p->{type}, 'application/octet-stream', "$name: part $i type");
        is_bytes($p->{data}, substr($blob, $s, $e - $s + 1),
                 "$name: part $i bytes");
    }
}

my %M;
@M{qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)} = 0 .. 11;

sub http_date { POSIX::strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime $_[0]) }

sub parse_http_date {
    my ($d, $m, $y, $H, $Mi, $S) =
        ($_[0] // '') =~ /(\d+) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT/
        or return;
    return timegm($S, $Mi, $H, $d, $M{$m}, $y);
}

###############################################################################
# the whole blob, for reference

my $r = get(undef);
check_full($r, 'no range');
is($r->{headers}{'accept-ranges'}, 'bytes', 'no range: accept-ranges');
my $lm = $r->{headers}{'last-modified'};
ok(defined $lm && defined parse_http_date($lm), 'blob GET has a Last-Modified');

###############################################################################
# single ranges

check_single(get('bytes=0-0'), 0, 0, 'first byte');
check_single(get('bytes=0-1023'), 0, 1023, 'first KiB');
check_single(get("bytes=$last-$last"), $last, $last, 'last byte');
check_single(get('bytes=40000-60000'), 40000, 60000, 'middle');
check_single(get('bytes=-100'), $len - 100, $last, 'suffix -100');
check_single(get('bytes=-1'), $last, $last, 'suffix -1');
check_single(get("bytes=-$len"), 0, $last, 'suffix of the whole length');
check_single(get('bytes=-200000'), 0, $last, 'suffix longer than the blob');
check_single(get('bytes=100000-'), 100000, $last, 'open range');
check_single(get('bytes=0-'), 0, $last, 'open range from 0');
check_single(get('bytes=100000-200000'), 100000, $last,
             'range past the end, clipped');
check_single(get("bytes=0-$last"), 0, $last, 'exactly the whole blob');
check_single(get('BYTES=10-19'), 10, 19, 'unit is case-insensitive');
check_single(get('bytes= 10-19'), 10, 19, 'space after bytes=');

###############################################################################
# several ranges: multipart/byteranges, in the order asked

check_multipart(get('bytes=0-9,20-29'), [[0, 9], [20, 29]], 'two ranges');
check_multipart(get('bytes=0-9, 20-29'), [[0, 9], [20, 29]],
                'two ranges, space after the comma');
check_multipart(get('bytes=0-0,5000-5999,-1'),
                [[0, 0], [5000, 5999], [$last, $last]],
                'three ranges with a suffix');
check_multipart(get('bytes=90000-90009,10-19'),
                [[90000, 90009], [10, 19]], 'ranges out of order, not sorted');
check_multipart(get('bytes=100-199,100000-'),
                [[100, 199], [100000, $last]], 'a range and an open range');

# overlapping ranges are not merged

check_multipart(get('bytes=0-99,50-149'), [[0, 99], [50, 149]],
                'overlapping ranges, both served as asked');
check_multipart(get('bytes=0-9,0-9'), [[0, 9], [0, 9]], 'the same range twice');

# ... unless together they ask for more bytes than the blob has: nginx then
# ignores the Range header

check_full(get('bytes=0-,0-'), 'two whole-blob ranges: full 200');
check_full(get('bytes=0-60000,40000-'),
           'overlapping ranges longer than the blob: full 200');

# a range that cannot be satisfied next to one that can: the good one alone

check_single(get('bytes=5-2,0-3'), 0, 3, 'reversed then good: the good range');
check_single(get('bytes=0-3,5-2'), 0, 3, 'good then reversed: the good range');
check_single(get('bytes=0-9,200000-'), 0, 9,
             'good then past the end: the good range');

###############################################################################
# 416

check_416(get('bytes=5-2'), 'reversed range alone');
check_416(get('bytes=3-0'), 'reversed range to 0');
check_416(get('bytes=200000-'), 'open range past the end');
check_416(get("bytes=$len-$len"), 'range starting at the size');
check_416(get('bytes=200000-200010,300000-'), 'two ranges past the end');
check_416(get('bytes=-0'), 'empty suffix');
check_416(get('bytes=abc'), 'syntactically bad range');
check_416(get('bytes=0-9,'), 'trailing comma');
check_416(get('bytes=+1-2'), 'plus sign');
check_416(head('bytes=200000-'), 'HEAD, range past the end', 1);

# another unit: not a range request at all

check_full(get('items=0-1'), 'items unit: full 200');
check_full(get('0-9'), 'no unit: full 200');

###############################################################################
# If-Range

check_single(get('bytes=0-9', 'If-Range' => qq{"$d"}), 0, 9,
             'If-Range with the ETag');
check_multipart(get('bytes=0-9,20-29', 'If-Range' => qq{"$d"}),
                [[0, 9], [20, 29]], 'If-Range with the ETag, two ranges');
check_full(get('bytes=0-9', 'If-Range' => '"sha256:' . ('0' x 64) . '"'),
           'If-Range with another ETag');
check_full(get('bytes=0-9', 'If-Range' => qq{W/"$d"}),
           'If-Range with the weak ETag: strong compare fails');
check_full(get('bytes=200000-', 'If-Range' => '"other"'),
           'If-Range with another ETag, unsatisfiable range: full 200');
check_416(get('bytes=200000-', 'If-Range' => qq{"$d"}),
          'If-Range with the ETag, unsatisfiable range');

# a date: the range is served when it equals Last-Modified, exactly

my $lt = parse_http_date($lm) // 0;
check_single(get('bytes=0-9', 'If-Range' => $lm), 0, 9,
             'If-Range with the Last-Modified date');
check_full(get('bytes=0-9', 'If-Range' => http_date($lt - 1)),
           'If-Range with a date before Last-Modified');
check_full(get('bytes=0-9', 'If-Range' => http_date($lt + 3600)),
           'If-Range with a date after Last-Modified');

###############################################################################
# If-None-Match, If-Modified-Since

for my $m ('GET', 'HEAD') {
    for my $inm (qq{"$d"}, '*', qq{W/"$d"}, qq{"x", "$d"}) {
        $r = $t->req($m, $path, headers => { 'If-None-Match' => $inm });
        is($r->{status}, 304, "$m If-None-Match $inm: 304");
        is($r->{content}, '', "$m If-None-Match $inm: no body");
        is($r->{headers}{'etag'}, qq{"$d"}, "$m If-None-Match $inm: etag");
        is($r->{headers}{'docker-content-digest'}, $d,
           "$m If-None-Match $inm: docker-content-digest");
    }
}

$r = get('bytes=0-9', 'If-None-Match' => qq{"$d"});
is($r->{status}, 304, 'If-None-Match with a Range: 304 wins');
is($r->{content}, '', 'If-None-Match with a Range: no body');

check_full(get(undef, 'If-None-Match' => '"sha256:' . ('1' x 64) . '"'),
           'If-None-Match with another ETag');
check_single(get('bytes=0-9', 'If-None-Match' => '"other"'), 0, 9,
             'If-None-Match with another ETag and a Range');

$r = get(undef, 'If-Modified-Since' => $lm);
is($r->{status}, 304, 'If-Modified-Since Last-Modified: 304');
is($r->{content}, '', 'If-Modified-Since Last-Modified: no body');

check_full(get(undef, 'If-Modified-Since' => http_date($lt - 3600)),
           'If-Modified-Since an hour before');

###############################################################################
# HEAD with a Range: the headers of the 206, no body

$r = head('bytes=10-29');
is($r->{status}, 206, 'HEAD range: 206');
is($r->{headers}{'content-range'}, "bytes 10-29/$len", 'HEAD range: content-range');
is($r->{headers}{'content-length'}, 20, 'HEAD range: content-length');
is($r->{headers}{'docker-content-digest'}, $d, 'HEAD range: digest');
is($r->{content}, '', 'HEAD range: no body');

$r = head('bytes=0-9,20-29');
is($r->{status}, 206, 'HEAD two ranges: 206');
like($r->{headers}{'content-type'} // '', qr{^multipart/byteranges;},
     'HEAD two ranges: multipart type');
is($r->{content}, '', 'HEAD two ranges: no body');

###############################################################################
# raw HTTP/1.0 and keep-alive

sub split_reply {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.[01] (\d{3}) };
    my %h;
    for my $line (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    return { status => $status // 0, headers => \%h, content => $body // '' };
}

$r = split_reply($t->raw("GET $path HTTP/1.0\r\nRange: bytes=1000-1999\r\n\r\n"));
check_single($r, 1000, 1999, 'HTTP/1.0 range');

$r = split_reply($t->raw("GET $path HTTP/1.0\r\nRange: bytes=0-9,20-29\r\n\r\n"));
check_multipart($r, [[0, 9], [20, 29]], 'HTTP/1.0 two ranges');

$r = split_reply($t->raw("GET $path HTTP/1.0\r\nRange: bytes=200000-\r\n\r\n"));
check_416($r, 'HTTP/1.0 unsatisfiable');

$r = split_reply($t->raw("HEAD $path HTTP/1.0\r\nRange: bytes=0-9\r\n\r\n"));
is($r->{status}, 206, 'HTTP/1.0 HEAD range: 206');
is($r->{content}, '', 'HTTP/1.0 HEAD range: no body');

# three requests on one connection: a 416 and a multipart answer leave the
# connection in step

{
    my $raw = $t->raw("GET $path HTTP/1.1\r\nHost: localhost\r\n"
                      . "Range: bytes=5-2\r\n\r\n"
                      . "GET $path HTTP/1.1\r\nHost: localhost\r\n"
                      . "Range: bytes=0-9,20-29\r\n\r\n"
                      . "GET $path HTTP/1.1\r\nHost: localhost\r\n"
                      . "Range: bytes=30-39\r\nConnection: close\r\n\r\n");

    my @replies;

    while (length $raw) {
        my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
        last unless defined $rest;
        my ($cl) = $head =~ /^Content-Length:\s*(\d+)/mi;
        $cl //= 0;
        push @replies, split_reply($head . "\r\n\r\n" . substr($rest, 0, $cl));
        $raw = length($rest) > $cl ? substr($rest, $cl) : '';
    }

    is(scalar @replies, 3, 'keep-alive: three answers');
    check_416($replies[0] || {}, 'keep-alive: first, reversed');
    check_multipart($replies[1] || {}, [[0, 9], [20, 29]],
                    'keep-alive: second, two ranges');
    check_single($replies[2] || {}, 30, 39, 'keep-alive: third, one range');
}

###############################################################################
# an empty blob: no range can be satisfied, nginx answers 200 with nothing

my $e = $t->push_blob('lib/range', '');

for my $rg ('bytes=0-', 'bytes=0-9', 'bytes=-1') {
    $r = $t->req('GET', "/v2/lib/range/blobs/$e", headers => { Range => $rg });
    is($r->{status}, 200, "empty blob, $rg: 200");
    is($r->{content}, '', "empty blob, $rg: empty");
    is($r->{headers}{'content-length'}, 0, "empty blob, $rg: content-length 0");
}

###############################################################################
# a sha512 blob: the same range and conditional rules

{
    my $s = substr($blob, 0, 5000);
    my $d512 = 'sha512:' . sha512_hex($s);
    $r = $t->req('POST', "/v2/lib/range/blobs/uploads/?digest=$d512",
                 content => $s);
    is($r->{status}, 201, 'sha512 blob pushed');

    $r = $t->req('GET', "/v2/lib/range/blobs/$d512",
                 headers => { Range => 'bytes=100-199' });
    is($r->{status}, 206, 'sha512 range: 206');
    is($r->{headers}{'content-range'}, 'bytes 100-199/5000',
       'sha512 range: content-range');
    is_bytes($r->{content}, substr($s, 100, 100), 'sha512 range: bytes');
    is($r->{headers}{'etag'}, qq{"$d512"}, 'sha512 range: etag');

    $r = $t->req('GET', "/v2/lib/range/blobs/$d512",
                 headers => { Range => 'bytes=100-199',
                              'If-Range' => qq{"$d512"} });
    is($r->{status}, 206, 'sha512 If-Range with its ETag: 206');

    $r = $t->req('GET', "/v2/lib/range/blobs/$d512",
                 headers => { 'If-None-Match' => qq{"$d512"} });
    is($r->{status}, 304, 'sha512 If-None-Match: 304');

    $r = $t->req('GET', "/v2/lib/range/blobs/$d512",
                 headers => { Range => 'bytes=5000-' });
    is($r->{status}, 416, 'sha512 unsatisfiable: 416');
    is($r->{headers}{'content-range'}, 'bytes */5000',
       'sha512 unsatisfiable: content-range');
    is(RegTest::error_code($r), 'SIZE_INVALID', 'sha512 unsatisfiable: code');
}

###############################################################################
# a Range on a manifest: manifests are not range-served (the spec serves a
# manifest whole; the module leaves r->allow_ranges off for them, so nginx's
# range filter ignores the header): every range, satisfiable, multiple or
# past the end, gets 200 with the whole manifest, by tag and by digest

{
    my $img = $t->push_image('lib/range', 'v1');
    my $m = $img->{manifest};
    my $mlen = length $m;
    my $accept = 'application/vnd.oci.image.manifest.v1+json';

    for my $ref ('v1', $img->{digest}) {
        for my $rg ('bytes=0-9', 'bytes=10-', 'bytes=-5', 'bytes=0-1,5-6',
                    "bytes=$mlen-", 'bytes=abc')
        {
            my $name = "manifest $ref, $rg";

            $r = $t->req('GET', "/v2/lib/range/manifests/$ref",
                         headers => { Range => $rg, Accept => $accept });

            is($r->{status}, 200, "$name: 200, not range-served");
            is(length $r->{content}, $mlen, "$name: the whole length");
            is($r->{content}, $m, "$name: the whole manifest");
            is($r->{headers}{'content-length'}, $mlen,
               "$name: Content-Length of the whole");
            is($r->{headers}{'content-range'}, undef, "$name: no Content-Range");
            is($r->{headers}{'accept-ranges'}, undef, "$name: no Accept-Ranges");
            is($r->{headers}{'docker-content-digest'}, $img->{digest},
               "$name: digest");
        }

        $r = $t->req('HEAD', "/v2/lib/range/manifests/$ref",
                     headers => { Range => 'bytes=0-9', Accept => $accept });
        is($r->{status}, 200, "manifest $ref, HEAD with a Range: 200");
        is($r->{headers}{'content-length'}, $mlen,
           "manifest $ref, HEAD with a Range: Content-Length of the whole");
        is($r->{headers}{'content-range'}, undef,
           "manifest $ref, HEAD with a Range: no Content-Range");
    }

    $r = $t->req('GET', '/v2/lib/range/manifests/v1',
                 headers => { 'If-None-Match' => qq{"$img->{digest}"},
                              Range => 'bytes=0-9', Accept => $accept });
    is($r->{status}, 304, 'manifest If-None-Match with a Range: 304');
}

$t->stop();

done_testing();
