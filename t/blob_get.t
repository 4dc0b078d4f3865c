#!/usr/bin/perl

# GET and HEAD of blobs: headers, ranges, conditional requests, and blobs
# that exist in the store but are not linked in the repository asked for.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $t = RegTest->new();

my $blob = join '', map { chr } 0 .. 255, 0 .. 255, 10, 13, 0;
my $len = length $blob;
my $d = $t->push_blob('lib/app', $blob);
my $other = $t->push_blob('other', 'another blob');

# GET

my $r = $t->req('GET', "/v2/lib/app/blobs/$d");
is($r->{status}, 200, 'get');
is($r->{content}, $blob, 'get body');
is($r->{headers}{'content-length'}, $len, 'get content-length');
is($r->{headers}{'content-type'}, 'application/octet-stream', 'get content-type');
is($r->{headers}{'docker-content-digest'}, $d, 'get digest');
is($r->{headers}{'etag'}, qq{"$d"}, 'get etag');
is($r->{headers}{'accept-ranges'}, 'bytes', 'get accept-ranges');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'get api version');

# HEAD

$r = $t->req('HEAD', "/v2/lib/app/blobs/$d");
is($r->{status}, 200, 'head');
is($r->{content}, '', 'head no body');
is($r->{headers}{'content-length'}, $len, 'head content-length');
is($r->{headers}{'content-type'}, 'application/octet-stream', 'head content-type');
is($r->{headers}{'docker-content-digest'}, $d, 'head digest');
is($r->{headers}{'etag'}, qq{"$d"}, 'head etag');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'head api version');

# the same over a raw HTTP/1.0 connection: the body is exactly the blob

my $raw = $t->raw("GET /v2/lib/app/blobs/$d HTTP/1.0\r\n"
                  . "Host: localhost\r\nConnection: close\r\n\r\n");
my ($head, $body) = split /\r\n\r\n/, $raw, 2;
like($head, qr{^HTTP/1\.1 200 }, 'raw get status');
ok(defined $body && $body eq $blob, 'raw get body');

# ranges

$r = $t->req('GET', "/v2/lib/app/blobs/$d", headers => { Range => 'bytes=2-5' });
is($r->{status}, 206, 'range');
is($r->{content}, substr($blob, 2, 4), 'range body');
is($r->{headers}{'content-range'}, "bytes 2-5/$len", 'range content-range');
is($r->{headers}{'content-length'}, 4, 'range content-length');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'range api version');

$r = $t->req('GET', "/v2/lib/app/blobs/$d", headers => { Range => 'bytes=500-' });
is($r->{status}, 206, 'open range');
is($r->{content}, substr($blob, 500), 'open range body');
is($r->{headers}{'content-range'}, "bytes 500-" . ($len - 1) . "/$len",
   'open range content-range');

$r = $t->req('GET', "/v2/lib/app/blobs/$d", headers => { Range => 'bytes=-3' });
is($r->{status}, 206, 'suffix range');
is($r->{content}, substr($blob, -3), 'suffix range body');

$r = $t->req('GET', "/v2/lib/app/blobs/$d",
             headers => { Range => 'bytes=0-' . ($len + 100) });
is($r->{status}, 206, 'range past the end');
is($r->{content}, $blob, 'range past the end body');
is($r->{headers}{'content-range'}, "bytes 0-" . ($len - 1) . "/$len",
   'range past the end content-range');

$r = $t->req('GET', "/v2/lib/app/blobs/$d", headers => { Range => "bytes=$len-" });
is($r->{status}, 416, 'unsatisfiable range');
is($r->{headers}{'content-range'}, "bytes */$len", 'unsatisfiable content-range');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'unsatisfiable api version');

$r = $t->req('GET', "/v2/lib/app/blobs/$d",
             headers => { Range => 'bytes=' . ($len + 10) . '-' . ($len + 20) });
is($r->{status}, 416, 'unsatisfiable range 2');

# conditional requests

$r = $t->req('GET', "/v2/lib/app/blobs/$d", headers => { 'If-None-Match' => qq{"$d"} });
is($r->{status}, 304, 'if-none-match');
is($r->{content}, '', 'if-none-match no body');
is($r->{headers}{'etag'}, qq{"$d"}, 'if-none-match etag');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'if-none-match api version');

$r = $t->req('HEAD', "/v2/lib/app/blobs/$d", headers => { 'If-None-Match' => qq{"$d"} });
is($r->{status}, 304, 'if-none-match head');

$r = $t->req('GET', "/v2/lib/app/blobs/$d",
             headers => { 'If-None-Match' => qq{"$other"} });
is($r->{status}, 200, 'if-none-match other etag');
is($r->{content}, $blob, 'if-none-match other etag body');

# unknown and unlinked blobs

$r = $t->req('GET', "/v2/other/blobs/$d");
is($r->{status}, 404, 'blob of another repository');
is(RegTest::error_code($r), 'BLOB_UNKNOWN', 'blob of another repository code');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'blob of another repository api version');
like($r->{headers}{'content-type'}, qr{^application/json\b},
     'blob of another repository error type');

$r = $t->req('HEAD', "/v2/other/blobs/$d");
is($r->{status}, 404, 'head blob of another repository');
is($r->{content}, '', 'head blob of another repository no body');

$r = $t->req('GET', "/v2/lib/app/blobs/$other");
is($r->{status}, 404, 'blob of another repository 2');
is(RegTest::error_code($r), 'BLOB_UNKNOWN', 'blob of another repository 2 code');

$r = $t->req('GET', "/v2/lib/blobs/$d");
is($r->{status}, 404, 'blob of the parent path');

$r = $t->req('GET', "/v2/lib/app/sub/blobs/$d");
is($r->{status}, 404, 'blob of a child path');

$r = $t->req('GET', "/v2/nosuchrepo/blobs/$d");
is($r->{status}, 404, 'blob of an unknown repository');

my $unknown = RegTest::digest('never pushed');
$r = $t->req('GET', "/v2/lib/app/blobs/$unknown");
is($r->{status}, 404, 'unknown blob');
is(RegTest::error_code($r), 'BLOB_UNKNOWN', 'unknown blob code');

$r = $t->req('GET', "/v2/lib/app/blobs/sha512:" . ('ab' x 64));
is($r->{status}, 404, 'unknown sha512 blob');
is(RegTest::error_code($r), 'BLOB_UNKNOWN', 'unknown sha512 blob code');

# a link without data is not a blob

my $ghost = RegTest::digest('ghost');
(my $ghex = $ghost) =~ s/^sha256://;
my $ldir = $t->root . "/docker/registry/v2/repositories/lib/app/_layers/sha256/$ghex";
system('mkdir', '-p', $ldir) == 0 or die;
open my $fh, '>', "$ldir/link" or die;
print $fh $ghost;
close $fh;

$r = $t->req('GET', "/v2/lib/app/blobs/$ghost");
is($r->{status}, 404, 'link without data');
is(RegTest::error_code($r), 'BLOB_UNKNOWN', 'link without data code');

# empty blob

my $e = $t->push_blob('lib/app', '');
$r = $t->req('GET', "/v2/lib/app/blobs/$e");
is($r->{status}, 200, 'empty blob');
is($r->{content}, '', 'empty blob body');
is($r->{headers}{'content-length'}, 0, 'empty blob length');
is($r->{headers}{'docker-content-digest'}, $e, 'empty blob digest');

# a bigger blob, byte for byte

my $big = join '', map { pack('N', $_ * 2654435761 % 4294967296) } 1 .. 300000;
my $bd = $t->push_blob('lib/app', $big);
$r = $t->req('GET', "/v2/lib/app/blobs/$bd");
is($r->{status}, 200, 'big blob');
ok($r->{content} eq $big, 'big blob body');
is($r->{headers}{'content-length'}, length $big, 'big blob length');

$r = $t->req('GET', "/v2/lib/app/blobs/$bd",
             headers => { Range => 'bytes=1000000-1000099' });
is($r->{status}, 206, 'big blob range');
ok($r->{content} eq substr($big, 1000000, 100), 'big blob range body');

$t->stop();

done_testing();
