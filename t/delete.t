#!/usr/bin/perl

# DELETE of blobs and manifests, with registry_delete on and off, and
# with nginx's open_file_cache on.

use strict;
use warnings;

use Test::More;
use Cwd qw(abs_path);
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

# a repository that does not exist: 404, and the DELETE creates nothing

check_error($t->req('DELETE', "/v2/nosuchrepo/manifests/$m->{digest}"), 404,
            'MANIFEST_UNKNOWN', 'delete manifest by digest in unknown repository');
check_error($t->req('DELETE', '/v2/nosuchrepo/manifests/a'), 404,
            'MANIFEST_UNKNOWN', 'delete manifest by tag in unknown repository');
check_error($t->req('DELETE', "/v2/no/such/repo/manifests/$m->{digest}"), 404,
            'MANIFEST_UNKNOWN', 'delete manifest in unknown nested repository');
ok(!-e "$v2/repositories/nosuchrepo" && !-e "$v2/repositories/no",
   'delete in unknown repository created nothing');
is($t->req('GET', '/v2/bytag/manifests/b')->{content}, $m->{manifest},
   'delete in unknown repository: same digest elsewhere kept');

$t->stop();

###############################################################################
# with nginx's open_file_cache on, a DELETE or a moved tag is seen by the
# very next request: only the immutable data files may be cached, never
# the repository's links

$t = RegTest->new(delete => 1,
                  http_extra => 'open_file_cache max=100 inactive=60s; '
                                . 'open_file_cache_valid 60s;');
$v2 = $t->root . '/docker/registry/v2';

sub data_file {
    my ($digest) = @_;
    (my $h = $digest) =~ s/^sha256://;
    return "$v2/blobs/sha256/" . substr($h, 0, 2) . "/$h/data";
}

# the files the worker holds open (what open_file_cache keeps)
sub held_open {
    my ($t) = @_;
    my %held;
    for my $pid ($t->pids_of_workers) {
        opendir(my $dh, "/proc/$pid/fd") or return undef;
        for my $fd (grep { /^\d+$/ } readdir $dh) {
            my $to = readlink "/proc/$pid/fd/$fd";
            $held{$to} = 1 if defined $to;
        }
        closedir $dh;
    }
    return \%held;
}

# the same request several times, all 200: the cache is primed
sub prime {
    my ($t, $method, $path, $what) = @_;
    my @st = map { $t->req($method, $path)->{status} } 1 .. 4;
    is("@st", '200 200 200 200', "cache: $what served 4 times");
}

my $cimg = $t->push_image('cache/app', 'v1', layers => ['cached layer bytes']);
is($t->push_manifest('cache/app', 'v2', $cimg->{manifest},
                     $cimg->{type})->{status}, 201, 'cache: second tag');
my $cl = $cimg->{layers}[0];

prime($t, 'GET', "/v2/cache/app/blobs/$cl", 'blob GET');
prime($t, 'HEAD', "/v2/cache/app/blobs/$cl", 'blob HEAD');
prime($t, 'GET', "/v2/cache/app/manifests/$cimg->{digest}", 'manifest by digest');
prime($t, 'HEAD', "/v2/cache/app/manifests/$cimg->{digest}",
      'manifest HEAD by digest');
prime($t, 'GET', '/v2/cache/app/manifests/v1', 'manifest by tag v1');
prime($t, 'GET', '/v2/cache/app/manifests/v2', 'manifest by tag v2');
prime($t, 'HEAD', '/v2/cache/app/manifests/v1', 'manifest HEAD by tag');

SKIP: {
    my $held = held_open($t);
    skip 'cannot read /proc/<worker>/fd', 2 unless $held;
    ok($held->{ abs_path(data_file($cl)) },
       'cache: the worker holds the blob data open');
    ok($held->{ abs_path(data_file($cimg->{digest})) },
       'cache: the worker holds the manifest data open');
}

# the blob's link goes: 404 at once, though its data stays cached

is($t->req('DELETE', "/v2/cache/app/blobs/$cl")->{status}, 202,
   'cache: delete blob');
check_error($t->req('GET', "/v2/cache/app/blobs/$cl"), 404, 'BLOB_UNKNOWN',
            'cache: deleted blob GET');
is($t->req('HEAD', "/v2/cache/app/blobs/$cl")->{status}, 404,
   'cache: deleted blob HEAD');
ok(-f data_file($cl), 'cache: deleted blob data still on disk');

# the manifest by digest goes, and both its tags

is($t->req('DELETE', "/v2/cache/app/manifests/$cimg->{digest}")->{status}, 202,
   'cache: delete manifest by digest');
check_error($t->req('GET', "/v2/cache/app/manifests/$cimg->{digest}"), 404,
            'MANIFEST_UNKNOWN', 'cache: deleted manifest GET by digest');
is($t->req('HEAD', "/v2/cache/app/manifests/$cimg->{digest}")->{status}, 404,
   'cache: deleted manifest HEAD by digest');
check_error($t->req('GET', '/v2/cache/app/manifests/v1'), 404,
            'MANIFEST_UNKNOWN', 'cache: deleted manifest GET by tag v1');
check_error($t->req('GET', '/v2/cache/app/manifests/v2'), 404,
            'MANIFEST_UNKNOWN', 'cache: deleted manifest GET by tag v2');
is($t->req('HEAD', '/v2/cache/app/manifests/v1')->{status}, 404,
   'cache: deleted manifest HEAD by tag');
ok(-f data_file($cimg->{digest}), 'cache: deleted manifest data still on disk');

# pushed again: served again at once

$t->push_blob('cache/app', 'cached layer bytes');
is($t->req('GET', "/v2/cache/app/blobs/$cl")->{content}, 'cached layer bytes',
   'cache: blob pushed again served');
is($t->push_manifest('cache/app', 'v1', $cimg->{manifest},
                     $cimg->{type})->{status}, 201,
   'cache: manifest pushed again');
is($t->req('GET', '/v2/cache/app/manifests/v1')->{content}, $cimg->{manifest},
   'cache: manifest pushed again served by tag');
is($t->req('GET', '/v2/cache/app/manifests/v2')->{status}, 404,
   'cache: the other tag stays deleted');

# a tag deleted alone

my $ct = $t->push_image('cache/tag', 'a');
$t->push_manifest('cache/tag', 'b', $ct->{manifest}, $ct->{type});
prime($t, 'GET', '/v2/cache/tag/manifests/a', 'tag a');
is($t->req('DELETE', '/v2/cache/tag/manifests/a')->{status}, 202,
   'cache: delete tag');
check_error($t->req('GET', '/v2/cache/tag/manifests/a'), 404,
            'MANIFEST_UNKNOWN', 'cache: deleted tag GET');
is($t->req('HEAD', '/v2/cache/tag/manifests/a')->{status}, 404,
   'cache: deleted tag HEAD');
is($t->req('GET', '/v2/cache/tag/manifests/b')->{content}, $ct->{manifest},
   'cache: the other tag still served');

# a tag moved to another manifest (another type too), and back

my $x = $t->push_image('cache/mv', 'mv');
my $y = $t->push_image('cache/mv', 'y', type => 'docker');
prime($t, 'GET', '/v2/cache/mv/manifests/mv', 'tag mv');
prime($t, 'HEAD', '/v2/cache/mv/manifests/mv', 'tag mv HEAD');

for my $step ([$y, 'moved'], [$x, 'moved back']) {
    my ($to, $what) = @$step;
    is($t->push_manifest('cache/mv', 'mv', $to->{manifest}, $to->{type})
           ->{status}, 201, "cache: tag $what");
    $r = $t->req('GET', '/v2/cache/mv/manifests/mv');
    ok($r->{status} == 200 && $r->{content} eq $to->{manifest},
       "cache: tag $what: new bytes at once");
    is($r->{headers}{'docker-content-digest'}, $to->{digest},
       "cache: tag $what: new digest");
    is($r->{headers}{'content-type'}, $to->{type}, "cache: tag $what: new type");
    $r = $t->req('HEAD', '/v2/cache/mv/manifests/mv');
    is($r->{headers}{'docker-content-digest'}, $to->{digest},
       "cache: tag $what: HEAD digest");
    is($r->{headers}{'content-length'}, length $to->{manifest},
       "cache: tag $what: HEAD content-length");
}

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
