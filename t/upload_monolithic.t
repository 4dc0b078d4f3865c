#!/usr/bin/perl

# POST /v2/<name>/blobs/uploads/: monolithic uploads with ?digest=, and the
# start of an upload session.

use strict;
use warnings;

use Test::More;
use File::Find;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $UUID = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

my $t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

# monolithic push

my $blob = "hello, registry\n" x 100;
my $d = RegTest::digest($blob);

my $r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$d",
                headers => { 'Content-Type' => 'application/octet-stream' },
                content => $blob);
is($r->{status}, 201, 'monolithic push');
is($r->{headers}{'location'}, "/v2/lib/mono/blobs/$d", 'monolithic location');
is($r->{headers}{'docker-content-digest'}, $d, 'monolithic digest');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'monolithic api version');

$r = $t->req('GET', "/v2/lib/mono/blobs/$d");
is($r->{status}, 200, 'monolithic read back');
is($r->{content}, $blob, 'monolithic read back body');

# again: the blob exists already

$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$d", content => $blob);
is($r->{status}, 201, 'monolithic push again');
is($r->{headers}{'docker-content-digest'}, $d, 'monolithic push again digest');

# the same bytes in another repository: stored once, linked twice

$r = $t->req('POST', "/v2/lib/mono2/blobs/uploads/?digest=$d", content => $blob);
is($r->{status}, 201, 'monolithic push to another repository');
is($r->{headers}{'location'}, "/v2/lib/mono2/blobs/$d",
   'monolithic push to another repository location');
is($t->req('GET', "/v2/lib/mono2/blobs/$d")->{content}, $blob,
   'read back from another repository');
ok(-f $t->layer_link('lib/mono', $d) && -f $t->layer_link('lib/mono2', $d),
   'linked in both repositories');

# empty blob

my $e = RegTest::digest('');
$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$e", content => '');
is($r->{status}, 201, 'empty monolithic push');
$r = $t->req('GET', "/v2/lib/mono/blobs/$e");
is($r->{status}, 200, 'empty blob read back');
is($r->{headers}{'content-length'}, 0, 'empty blob length');

# body in chunked transfer encoding

my $streamed = join '', map { "chunk $_ " x 1000 } 1 .. 20;
my $sd = RegTest::digest($streamed);
my @parts = unpack '(a65536)*', $streamed;
$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$sd",
             content => sub { shift @parts });
is($r->{status}, 201, 'chunked monolithic push');
is($r->{headers}{'docker-content-digest'}, $sd, 'chunked monolithic digest');
ok($t->req('GET', "/v2/lib/mono/blobs/$sd")->{content} eq $streamed,
   'chunked monolithic read back');

# 8 MiB

my $big = pack('N*', map { $_ * 2246822519 % 4294967296 } 1 .. 2 * 1024 * 1024);
my $bd = RegTest::digest($big);
$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$bd", content => $big);
is($r->{status}, 201, '8 MiB monolithic push');
$r = $t->req('GET', "/v2/lib/mono/blobs/$bd");
ok($r->{content} eq $big, '8 MiB read back');
is(-s $t->blob_path($bd), length $big, '8 MiB stored');

# digest mismatch: nothing is published

my $claimed = RegTest::digest('something else');
my $payload = 'the real payload';
my $real = RegTest::digest($payload);

$r = $t->req('POST', "/v2/lib/bad/blobs/uploads/?digest=$claimed",
             content => $payload);
is($r->{status}, 400, 'mismatch');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'mismatch code');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'mismatch api version');
ok(!-e $t->blob_path($claimed), 'mismatch: no blob under the claimed digest');
ok(!-e $t->blob_path($real), 'mismatch: no blob under the real digest');
ok(!-e $t->layer_link('lib/bad', $claimed), 'mismatch: no link for the claimed digest');
ok(!-e $t->layer_link('lib/bad', $real), 'mismatch: no link for the real digest');
is($t->req('GET', "/v2/lib/bad/blobs/$claimed")->{status}, 404,
   'mismatch: claimed digest unknown');
is($t->req('GET', "/v2/lib/bad/blobs/$real")->{status}, 404,
   'mismatch: real digest unknown');

# chunked body, mismatch

@parts = ('abc', 'def');
$r = $t->req('POST', "/v2/lib/bad/blobs/uploads/?digest=$claimed",
             content => sub { shift @parts });
is($r->{status}, 400, 'chunked mismatch');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'chunked mismatch code');
ok(!-e $t->blob_path($claimed) && !-e $t->blob_path(RegTest::digest('abcdef')),
   'chunked mismatch: nothing stored');

# sha512

my $d512 = 'sha512:' . Digest::SHA::sha512_hex($payload);
$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=$d512",
             content => $payload);
is($r->{status}, 201, 'sha512 monolithic push');
is($r->{headers}{'docker-content-digest'}, $d512, 'sha512 digest');
$r = $t->req('GET', "/v2/lib/mono/blobs/$d512");
is($r->{status}, 200, 'sha512 read back');
is($r->{content}, $payload, 'sha512 read back body');
is($r->{headers}{'docker-content-digest'}, $d512, 'sha512 read back digest');
ok(-f $t->blob_path($d512), 'sha512 stored under blobs/sha512');

$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=sha512:" . ('0' x 128),
             content => $payload);
is($r->{status}, 400, 'sha512 mismatch');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'sha512 mismatch code');

# no leftovers from the failed pushes

my @tmp;
find(sub { push @tmp, $File::Find::name if -f }, "$v2/_ngx_tmp") if -d "$v2/_ngx_tmp";
is("@tmp", '', 'no temporary files left');

# starting an upload session

$r = $t->req('POST', '/v2/lib/mono/blobs/uploads/');
is($r->{status}, 202, 'start upload');
like($r->{headers}{'location'}, qr{^/v2/lib/mono/blobs/uploads/$UUID$},
     'start upload location');
my ($id) = ($r->{headers}{'location'} // '') =~ m{/([^/]+)$};
is($r->{headers}{'docker-upload-uuid'}, $id, 'start upload uuid');
is($r->{headers}{'range'}, '0-0', 'start upload range');
is($r->{headers}{'content-length'}, 0, 'start upload content-length');
is($r->{content}, '', 'start upload no body');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'start upload api version');

$r = $t->req('POST', '/v2/lib/mono/blobs/uploads/', content => '');
isnt($r->{headers}{'docker-upload-uuid'}, $id, 'second upload, another uuid');
is($r->{status}, 202, 'start upload with empty body');

# cross-repository mount (t/mount.t has the details): the blob is linked

$r = $t->req('POST', "/v2/lib/other/blobs/uploads/?mount=$d&from=lib/mono");
is($r->{status}, 201, 'mount links the blob');
is($r->{headers}{'location'}, "/v2/lib/other/blobs/$d", 'mount location');
is($t->req('GET', "/v2/lib/other/blobs/$d")->{content}, $blob,
   'mounted blob read back');

# query strings as clients write them: ':' percent-encoded (Go's
# url.Values.Encode does so), other parameters around the digest

my $q = "query string blob";
my $qd = RegTest::digest($q);
(my $qenc = $qd) =~ s/:/%3A/;
(my $qenc_lc = $qd) =~ s/:/%3a/;

for my $query ("digest=$qenc", "digest=$qenc_lc", "foo=bar&digest=$qd",
               "digest=$qd&foo=bar", "_state=abc%3D%3D&digest=$qenc")
{
    $r = $t->req('POST', "/v2/lib/query/blobs/uploads/?$query", content => $q);
    is($r->{status}, 201, "monolithic push with ?$query");
    is($r->{headers}{'docker-content-digest'}, $qd, "monolithic push with ?$query digest");
    is($r->{headers}{'location'}, "/v2/lib/query/blobs/$qd",
       "monolithic push with ?$query location");
}

# ?digest= without a value, or other parameters: a digest is checked

$r = $t->req('POST', "/v2/lib/mono/blobs/uploads/?digest=", content => 'x');
is($r->{status}, 400, 'empty digest parameter');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'empty digest parameter code');

$t->stop();

done_testing();
