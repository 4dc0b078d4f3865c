#!/usr/bin/perl

# DELETE of blobs and manifests, with registry_delete on and off.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

sub check_error { RegTest::check_error(@_) }

sub tags {
    my ($t, $name) = @_;
    my $r = $t->req('GET', "/v2/$name/tags/list");
    return [ sort @{ (eval { decode_json($r->{content}) } || {})->{tags} || [] } ];
}

###############################################################################

my $t = RegTest->new(delete => 1);
my $v2 = $t->root . '/docker/registry/v2';

# blobs

my $d = $t->push_blob('del', 'a blob to delete');
$t->push_blob('keep', 'a blob to delete');
(my $hex = $d) =~ s/^sha256://;

my $r = $t->req('DELETE', "/v2/del/blobs/$d");
is($r->{status}, 202, 'delete blob');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'delete blob api version');

check_error($t->req('GET', "/v2/del/blobs/$d"), 404, 'BLOB_UNKNOWN',
            'deleted blob');
is($t->req('HEAD', "/v2/del/blobs/$d")->{status}, 404, 'deleted blob head');
ok(!-e "$v2/repositories/del/_layers/sha256/$hex/link", 'link removed');
ok(-f "$v2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data",
   'data kept until garbage collection');
is($t->req('GET', "/v2/keep/blobs/$d")->{content}, 'a blob to delete',
   'blob still in the other repository');

check_error($t->req('DELETE', "/v2/del/blobs/$d"), 404, 'BLOB_UNKNOWN',
            'delete blob again');
check_error($t->req('DELETE', '/v2/del/blobs/' . RegTest::digest('never')),
            404, 'BLOB_UNKNOWN', 'delete unknown blob');
is($t->req('DELETE', "/v2/nosuchrepo/blobs/$d")->{status}, 404,
   'delete blob in unknown repository');

# the blob can be pushed again

$t->push_blob('del', 'a blob to delete');
is($t->req('GET', "/v2/del/blobs/$d")->{status}, 200, 'blob pushed again');

# manifests by digest: the revision and every tag pointing at it go

my $img = $t->push_image('del', 't1');
is($t->push_manifest('del', 't2', $img->{manifest}, $img->{type})->{status}, 201,
   'second tag');
my $other = $t->push_image('del', 'other');
is_deeply(tags($t, 'del'), ['other', 't1', 't2'], 'tags before delete');

$r = $t->req('DELETE', "/v2/del/manifests/$img->{digest}");
is($r->{status}, 202, 'delete manifest by digest');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'delete manifest by digest api version');

check_error($t->req('GET', "/v2/del/manifests/$img->{digest}"), 404,
            'MANIFEST_UNKNOWN', 'deleted manifest by digest');
check_error($t->req('GET', '/v2/del/manifests/t1'), 404, 'MANIFEST_UNKNOWN',
            'deleted manifest, tag t1');
check_error($t->req('GET', '/v2/del/manifests/t2'), 404, 'MANIFEST_UNKNOWN',
            'deleted manifest, tag t2');
is($t->req('HEAD', '/v2/del/manifests/t1')->{status}, 404,
   'deleted manifest, head tag');
is_deeply(tags($t, 'del'), ['other'], 'tags after delete');
is($t->req('GET', '/v2/del/manifests/other')->{content}, $other->{manifest},
   'other manifest untouched');

(my $mhex = $img->{digest}) =~ s/^sha256://;
ok(!-e "$v2/repositories/del/_manifests/revisions/sha256/$mhex/link",
   'revision link removed');
ok(!-e "$v2/repositories/del/_manifests/tags/t1/current/link",
   'tag t1 link removed');

check_error($t->req('DELETE', "/v2/del/manifests/$img->{digest}"), 404,
            'MANIFEST_UNKNOWN', 'delete manifest again');
check_error($t->req('DELETE', '/v2/del/manifests/' . RegTest::digest('never')),
            404, 'MANIFEST_UNKNOWN', 'delete unknown manifest');

# and it can be pushed again

$r = $t->push_manifest('del', 't1', $img->{manifest}, $img->{type});
is($r->{status}, 201, 'manifest pushed again');
is($t->req('GET', '/v2/del/manifests/t1')->{content}, $img->{manifest},
   'manifest pushed again read back');

# manifests by tag: only the tag goes

my $m = $t->push_image('bytag', 'a');
$t->push_manifest('bytag', 'b', $m->{manifest}, $m->{type});

$r = $t->req('DELETE', '/v2/bytag/manifests/a');
is($r->{status}, 202, 'delete tag');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'delete tag api version');

check_error($t->req('GET', '/v2/bytag/manifests/a'), 404, 'MANIFEST_UNKNOWN',
            'deleted tag');
is($t->req('GET', '/v2/bytag/manifests/b')->{content}, $m->{manifest},
   'other tag kept');
is($t->req('GET', "/v2/bytag/manifests/$m->{digest}")->{content}, $m->{manifest},
   'manifest kept');
is_deeply(tags($t, 'bytag'), ['b'], 'tags after tag delete');

check_error($t->req('DELETE', '/v2/bytag/manifests/a'), 404, 'MANIFEST_UNKNOWN',
            'delete tag again');
check_error($t->req('DELETE', '/v2/bytag/manifests/nosuchtag'), 404,
            'MANIFEST_UNKNOWN', 'delete unknown tag');

$t->stop();

###############################################################################

$t = RegTest->new(delete => 0);

$d = $t->push_blob('nodel', 'a blob to keep');
$m = $t->push_image('nodel', 'v1');

check_error($t->req('DELETE', "/v2/nodel/blobs/$d"), 405, 'UNSUPPORTED',
            'delete off: blob');
check_error($t->req('DELETE', "/v2/nodel/manifests/$m->{digest}"), 405,
            'UNSUPPORTED', 'delete off: manifest by digest');
check_error($t->req('DELETE', '/v2/nodel/manifests/v1'), 405, 'UNSUPPORTED',
            'delete off: manifest by tag');
check_error($t->req('DELETE', '/v2/nodel/blobs/' . RegTest::digest('never')),
            405, 'UNSUPPORTED', 'delete off: unknown blob');

is($t->req('GET', "/v2/nodel/blobs/$d")->{status}, 200, 'delete off: blob kept');
is($t->req('GET', '/v2/nodel/manifests/v1')->{content}, $m->{manifest},
   'delete off: tag kept');
is($t->req('GET', "/v2/nodel/manifests/$m->{digest}")->{status}, 200,
   'delete off: manifest kept');

# cancelling an upload is not a delete

$r = $t->req('POST', '/v2/nodel/blobs/uploads/');
is($t->req('DELETE', $r->{headers}{location})->{status}, 204,
   'delete off: upload cancel allowed');

$t->stop();

done_testing();
