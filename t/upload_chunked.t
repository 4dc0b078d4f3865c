#!/usr/bin/perl

# Upload sessions: PATCH chunks with and without Content-Range, streamed
# PATCH, status, cancel, completion with PUT, and the errors on the way.

use strict;
use warnings;

use Test::More;
use File::Find;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $UUID = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

my $t = RegTest->new();

sub start {
    my ($t, $name) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    die "start upload: $r->{status}\n" unless $r->{status} == 202;
    return $r->{headers}{location};
}

sub patch {
    my ($t, $loc, $data, $range) = @_;
    return $t->req('PATCH', $loc,
                   headers => {
                       'Content-Type' => 'application/octet-stream',
                       defined $range ? ('Content-Range' => $range) : (),
                   },
                   content => $data);
}

# chunks with Content-Range

my $loc = start($t, 'lib/up');
like($loc, qr{^/v2/lib/up/blobs/uploads/$UUID$}, 'location');
my ($id) = $loc =~ m{/([^/]+)$};

my $blob = join '', map { sprintf "%04d", $_ } 1 .. 10;   # 40 bytes

my $r = patch($t, $loc, substr($blob, 0, 10), '0-9');
is($r->{status}, 202, 'patch 1');
is($r->{headers}{'range'}, '0-9', 'patch 1 range');
is($r->{headers}{'location'}, $loc, 'patch 1 location');
is($r->{headers}{'docker-upload-uuid'}, $id, 'patch 1 uuid');
is($r->{headers}{'content-length'}, 0, 'patch 1 content-length');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'patch 1 api version');

$r = $t->req('GET', $loc);
is($r->{status}, 204, 'status');
is($r->{headers}{'range'}, '0-9', 'status range');
is($r->{headers}{'location'}, $loc, 'status location');
is($r->{headers}{'docker-upload-uuid'}, $id, 'status uuid');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'status api version');
is($r->{content}, '', 'status no body');

$r = patch($t, $loc, substr($blob, 10, 10), '10-19');
is($r->{status}, 202, 'patch 2');
is($r->{headers}{'range'}, '0-19', 'patch 2 range');

# out of order, overlapping

$r = patch($t, $loc, substr($blob, 30, 10), '30-39');
is($r->{status}, 416, 'gap');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'gap code');
is($r->{headers}{'range'}, '0-19', 'gap range');
is($r->{headers}{'location'}, $loc, 'gap location');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'gap api version');

$r = patch($t, $loc, substr($blob, 15, 10), '15-24');
is($r->{status}, 416, 'overlap');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'overlap code');
is($r->{headers}{'range'}, '0-19', 'overlap range');

$r = patch($t, $loc, substr($blob, 0, 10), '0-9');
is($r->{status}, 416, 'chunk again');
is($r->{headers}{'range'}, '0-19', 'chunk again range');

# Content-Length and Content-Range disagree

$r = patch($t, $loc, substr($blob, 20, 5), '20-29');
is($r->{status}, 400, 'short body');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'short body code');

$r = patch($t, $loc, substr($blob, 20, 15), '20-29');
is($r->{status}, 400, 'long body');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'long body code');

$r = $t->req('GET', $loc);
is($r->{headers}{'range'}, '0-19', 'rejected chunks wrote nothing');

# malformed Content-Range (not <start>-<end>): 400, not 416, nothing written

sub detail {
    my ($r) = @_;
    my $j = eval { JSON::PP->new->decode($r->{content}) } || {};
    return ref $j->{errors} eq 'ARRAY' ? $j->{errors}[0]{detail} // '' : '';
}

for my $cr ('abc', '5', '-5', '5-', '20-', '-', '20--29', '20-29x', '20 - 29',
            'bytes=abc', '')
{
    $r = patch($t, $loc, substr($blob, 20, 10), $cr);
    my $what = "malformed content-range '$cr'";
    is($r->{status}, 400, "$what status");
    is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', "$what code");
    like(detail($r), qr/malformed Content-Range/, "$what detail");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$what api version");
}

$r = $t->req('PUT', "$loc?digest=" . RegTest::digest($blob),
             headers => { 'Content-Range' => '5-' },
             content => substr($blob, 20));
is($r->{status}, 400, 'put with malformed content-range status');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID',
   'put with malformed content-range code');

$r = $t->req('GET', $loc);
is($r->{status}, 204, 'malformed ranges: session still open');
is($r->{headers}{'range'}, '0-19', 'malformed ranges wrote nothing');

# a Content-Range whose end is the largest off_t: its length (end + 1 -
# start) does not fit, so it is no range to satisfy; nothing is written,
# whatever the body's framing

{
    my $oloc = start($t, 'lib/overflow');
    my ($oid) = $oloc =~ m{/([^/]+)$};
    my $odata = $t->root
        . "/docker/registry/v2/repositories/lib/overflow/_uploads/$oid/data";
    my $twenty = 'twenty bytes of data';

    for my $case (['0-9223372036854775807', 'chunked'],
                  ['0-9223372036854775807', 'Content-Length'],
                  ['1-9223372036854775807', 'chunked'])
    {
        my ($cr, $framing) = @$case;
        my $what = "content-range $cr, $framing body, empty session";
        my @body = ($twenty);
        $r = $t->req('PATCH', $oloc,
                     headers => { 'Content-Range' => $cr,
                                  'Content-Type' => 'application/octet-stream' },
                     content => $framing eq 'chunked' ? sub { shift @body }
                                                      : $twenty);
        is($r->{status}, 416, "$what: 416");
        is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', "$what: code");
        is($r->{headers}{'docker-distribution-api-version'}, $API,
           "$what: api version");

        $r = $t->req('GET', $oloc);
        is($r->{headers}{'range'}, '0-0', "$what: session still empty");
        is(-s $odata, 0, "$what: nothing in the data file");
    }

    $r = patch($t, $oloc, $twenty, '0-19');
    is($r->{status}, 202, 'after the overflowing ranges: a chunk at 0: 202');
    is($r->{headers}{'range'}, '0-19',
       'after the overflowing ranges: a chunk at 0: range');

    my @body = ($twenty);
    $r = $t->req('PATCH', $oloc,
                 headers => { 'Content-Range' => '20-9223372036854775807' },
                 content => sub { shift @body });
    is($r->{status}, 416,
       'content-range 20-9223372036854775807 after 20 bytes: 416');
    $r = $t->req('GET', $oloc);
    is($r->{headers}{'range'}, '0-19',
       'content-range 20-9223372036854775807 after 20 bytes: nothing written');
    is(-s $odata, 20,
       'content-range 20-9223372036854775807 after 20 bytes: data file unchanged');

    $t->req('DELETE', $oloc);
}

# without Content-Range: appended

$r = patch($t, $loc, substr($blob, 20, 10));
is($r->{status}, 202, 'patch without content-range');
is($r->{headers}{'range'}, '0-29', 'patch without content-range range');

# streamed, chunked transfer encoding

my @parts = (substr($blob, 30, 3), substr($blob, 33, 7));
$r = $t->req('PATCH', $loc, content => sub { shift @parts });
is($r->{status}, 202, 'streamed patch');
is($r->{headers}{'range'}, '0-39', 'streamed patch range');

# completion

my $d = RegTest::digest($blob);
$r = $t->req('PUT', "$loc?digest=$d");
is($r->{status}, 201, 'put');
is($r->{headers}{'location'}, "/v2/lib/up/blobs/$d", 'put location');
is($r->{headers}{'docker-content-digest'}, $d, 'put digest');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'put api version');

$r = $t->req('GET', "/v2/lib/up/blobs/$d");
is($r->{status}, 200, 'read back');
is($r->{content}, $blob, 'read back body');

$r = $t->req('GET', $loc);
is($r->{status}, 404, 'completed upload is gone');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'completed upload code');
$r = patch($t, $loc, 'x');
is($r->{status}, 404, 'patch after completion');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'patch after completion code');
$r = $t->req('PUT', "$loc?digest=$d");
is($r->{status}, 404, 'put after completion');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'put after completion code');

# PUT with the last chunk as body, with and without Content-Range

my $b2 = "0123456789abcdefghij";
my $d2 = RegTest::digest($b2);

$loc = start($t, 'lib/up');
$r = patch($t, $loc, substr($b2, 0, 8), '0-7');
is($r->{headers}{'range'}, '0-7', 'patch before final put');
$r = $t->req('PUT', "$loc?digest=$d2",
             headers => { 'Content-Range' => '8-19',
                          'Content-Type' => 'application/octet-stream' },
             content => substr($b2, 8));
is($r->{status}, 201, 'put with final chunk and content-range');
is($r->{headers}{'docker-content-digest'}, $d2, 'put with final chunk digest');
is($t->req('GET', "/v2/lib/up/blobs/$d2")->{content}, $b2,
   'put with final chunk read back');

my $b3 = "final chunk only";
my $d3 = RegTest::digest($b3);
$loc = start($t, 'lib/up');
$r = $t->req('PUT', "$loc?digest=$d3", content => $b3);
is($r->{status}, 201, 'put with whole body');
is($t->req('GET', "/v2/lib/up/blobs/$d3")->{content}, $b3,
   'put with whole body read back');

my $b4 = "streamed final chunk";
my $d4 = RegTest::digest($b4);
$loc = start($t, 'lib/up');
patch($t, $loc, 'streamed ');
@parts = ('final', ' chunk');
$r = $t->req('PUT', "$loc?digest=$d4", content => sub { shift @parts });
is($r->{status}, 201, 'put with streamed final chunk');
is($t->req('GET', "/v2/lib/up/blobs/$d4")->{content}, $b4,
   'put with streamed final chunk read back');

# final chunk at the wrong offset

$loc = start($t, 'lib/up');
patch($t, $loc, 'abc', '0-2');
$r = $t->req('PUT', "$loc?digest=" . RegTest::digest('abcdef'),
             headers => { 'Content-Range' => '4-6' }, content => 'def');
is($r->{status}, 416, 'put with chunk at a gap');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'put with chunk at a gap code');
is($r->{headers}{'range'}, '0-2', 'put with chunk at a gap range');

# query strings as clients write them

for my $query ('digest=%s', 'digest=%s&x=1', 'x=1&digest=%s', '_state=a%%3D&digest=%s') {
    my $b = "query $query";
    my $bd = RegTest::digest($b);
    (my $enc = $bd) =~ s/:/%3A/;

    $loc = start($t, 'lib/up');
    patch($t, $loc, $b);
    my $qs = sprintf $query, $enc;
    $r = $t->req('PUT', "$loc?$qs");
    is($r->{status}, 201, "put with ?$qs");
    is($r->{headers}{'docker-content-digest'}, $bd, "put with ?$qs digest");
    is($r->{headers}{'location'}, "/v2/lib/up/blobs/$bd", "put with ?$qs location");
}

# empty upload

$loc = start($t, 'lib/up');
my $e = RegTest::digest('');
$r = $t->req('GET', $loc);
is($r->{headers}{'range'}, '0-0', 'empty upload range');
$r = $t->req('PUT', "$loc?digest=$e");
is($r->{status}, 201, 'empty upload put');
is($t->req('GET', "/v2/lib/up/blobs/$e")->{headers}{'content-length'}, 0,
   'empty upload read back');

# first chunk not at 0

$loc = start($t, 'lib/up');
$r = patch($t, $loc, 'abc', '5-7');
is($r->{status}, 416, 'first chunk not at 0');
is($r->{headers}{'range'}, '0-0', 'first chunk not at 0 range');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'first chunk not at 0 code');

# missing or invalid digest on PUT

patch($t, $loc, 'abc', '0-2');
$r = $t->req('PUT', $loc);
is($r->{status}, 400, 'put without digest');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'put without digest code');

$loc = start($t, 'lib/up');
patch($t, $loc, 'abc', '0-2');
$r = $t->req('PUT', "$loc?digest=sha256:abc");
is($r->{status}, 400, 'put with invalid digest');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'put with invalid digest code');

# cancel

$loc = start($t, 'lib/up');
patch($t, $loc, 'abc');
$r = $t->req('DELETE', $loc);
is($r->{status}, 204, 'cancel');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'cancel api version');
$r = $t->req('GET', $loc);
is($r->{status}, 404, 'cancelled upload is gone');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'cancelled upload code');
$r = $t->req('DELETE', $loc);
is($r->{status}, 404, 'cancel again');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'cancel again code');
$r = patch($t, $loc, 'x');
is($r->{status}, 404, 'patch after cancel');

# unknown ids

my $unknown = '/v2/lib/up/blobs/uploads/0123abcd-0000-4000-8000-0123456789ab';
for my $m ('GET', 'PATCH', 'PUT', 'DELETE') {
    $r = $t->req($m, $unknown . ($m eq 'PUT' ? "?digest=$e" : ''),
                 $m eq 'PATCH' ? (content => 'x') : ());
    is($r->{status}, 404, "$m unknown upload");
    is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', "$m unknown upload code");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$m unknown upload api version");
}

# an id is valid only in its repository

$loc = start($t, 'lib/up');
(my $elsewhere = $loc) =~ s{^/v2/lib/up/}{/v2/lib/up2/};
$r = $t->req('GET', $elsewhere);
is($r->{status}, 404, 'upload in another repository');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'upload in another repository code');
$t->req('DELETE', $loc);

# several MiB in chunks, byte for byte

my $big = pack('N*', map { $_ * 2654435761 % 4294967296 } 1 .. 1536 * 1024);
my $bd = RegTest::digest($big);
my $chunk = 1024 * 1024 + 7;

$loc = start($t, 'lib/big');
my $off = 0;
my $ok = 1;
while ($off < length $big) {
    my $c = substr($big, $off, $chunk);
    my $end = $off + length($c) - 1;
    $r = patch($t, $loc, $c, "$off-$end");
    $ok &&= $r->{status} == 202 && $r->{headers}{range} eq "0-$end";
    $loc = $r->{headers}{location} if $r->{headers}{location};
    $off += length $c;
}
ok($ok, 'six MiB in chunks');
$r = $t->req('PUT', "$loc?digest=$bd");
is($r->{status}, 201, 'six MiB put');
$r = $t->req('GET', "/v2/lib/big/blobs/$bd");
is($r->{headers}{'content-length'}, length $big, 'six MiB length');
ok($r->{content} eq $big, 'six MiB read back');

$t->stop();

# digest mismatch on PUT: nothing published, upload cancelled

$t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

$loc = start($t, 'lib/mis');
patch($t, $loc, 'some bytes', '0-9');
my $claimed = RegTest::digest('other bytes');
$r = $t->req('PUT', "$loc?digest=$claimed");
is($r->{status}, 400, 'put mismatch');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'put mismatch code');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'put mismatch api version');

my @blobs;
find(sub { push @blobs, $File::Find::name if -f }, "$v2/blobs") if -d "$v2/blobs";
is("@blobs", '', 'put mismatch: nothing in blobs/');
ok(!-e "$v2/repositories/lib/mis/_layers", 'put mismatch: no _layers');

$r = $t->req('GET', $loc);
is($r->{status}, 404, 'put mismatch: upload cancelled');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', 'put mismatch: upload cancelled code');
is($t->req('GET', "/v2/lib/mis/blobs/$claimed")->{status}, 404,
   'put mismatch: claimed digest unknown');
is($t->req('GET', "/v2/lib/mis/blobs/" . RegTest::digest('some bytes'))->{status},
   404, 'put mismatch: real digest unknown');

# same, with the final chunk in the PUT body

$loc = start($t, 'lib/mis');
$r = $t->req('PUT', "$loc?digest=$claimed", content => 'some bytes');
is($r->{status}, 400, 'put mismatch with body');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'put mismatch with body code');
@blobs = ();
find(sub { push @blobs, $File::Find::name if -f }, "$v2/blobs") if -d "$v2/blobs";
is("@blobs", '', 'put mismatch with body: nothing in blobs/');
ok(!-e "$v2/repositories/lib/mis/_layers", 'put mismatch with body: no _layers');

$t->stop();

done_testing();
