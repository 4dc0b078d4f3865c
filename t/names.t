#!/usr/bin/perl

# Validation of repository names, tags, digests and upload ids; no invalid
# request may create anything, inside or outside the store.

use strict;
use warnings;

use Test::More;
use File::Find;
use JSON::PP ();

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $HEX = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

my $t = RegTest->new(delete => 1);

sub snapshot {
    my %f;
    find({ no_chdir => 1, wanted => sub {
        my $p = $File::Find::name;
        return if $p =~ m{/(error|access)\.log$};
        $f{$p} = 1;
    } }, $t->dir);
    return \%f;
}

sub check {
    my ($r, $status, $code, $name) = @_;
    is($r->{status}, $status, "$name status");
    is(RegTest::error_code($r), $code, "$name code");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$name api version");
}

# a worker creates the store's root as it starts: once it has answered,
# anything new in the tree comes from the requests below
is($t->req('GET', '/v2/')->{status}, 200, 'a worker answers');
my $before = snapshot();

# invalid names on every route family

my @bad_names = (
    'A', 'Foo', 'foo/Bar', 'a//b', '/x', 'x/', 'a/../b', 'a/..', 'a/./b', '.',
    '.a', 'a.', '-a', 'a-', '_a', 'a_', 'a..b', 'a___b', 'a._b', 'a/-b',
    'a%2fb', 'a%2F..%2Fb', 'a%20b', 'a+b', 'a:b', 'a@b', "a\x{e9}b",
    'a' x 256, ('a' x 127) . '/' . ('b' x 128),
);

for my $n (@bad_names) {
    my $show = length $n > 40 ? length($n) . '-char name' : "'$n'";

    check($t->req('GET', "/v2/$n/tags/list"), 400, 'NAME_INVALID',
          "tags list $show");
    check($t->req('GET', "/v2/$n/manifests/latest"), 400, 'NAME_INVALID',
          "manifest get $show");
    check($t->req('PUT', "/v2/$n/manifests/latest",
                  headers => { 'Content-Type' =>
                               'application/vnd.oci.image.manifest.v1+json' },
                  content => '{}'),
          400, 'NAME_INVALID', "manifest put $show");
    check($t->req('HEAD', "/v2/$n/blobs/sha256:$HEX"), 400, '',
          "blob head $show");
    check($t->req('GET', "/v2/$n/blobs/sha256:$HEX"), 400, 'NAME_INVALID',
          "blob get $show");
    check($t->req('DELETE', "/v2/$n/blobs/sha256:$HEX"), 400, 'NAME_INVALID',
          "blob delete $show");
    check($t->req('POST', "/v2/$n/blobs/uploads/"), 400, 'NAME_INVALID',
          "upload start $show");
    check($t->req('POST', "/v2/$n/blobs/uploads/?digest=sha256:$HEX",
                  content => ''),
          400, 'NAME_INVALID', "monolithic upload $show");
}

# requests that nginx itself resolves to a place outside /v2/ or the root

my $r;

for my $n ('..', '../a', '%2e%2e', '%2E%2E/a', 'a/../../../../escape') {
    $r = $t->req('POST', "/v2/$n/blobs/uploads/?digest=sha256:$HEX",
                 content => '');
    ok($r->{status} == 400 || $r->{status} == 404, "push to '$n' refused");
    $r = $t->req('POST', "/v2/$n/blobs/uploads/");
    ok($r->{status} == 400 || $r->{status} == 404, "upload to '$n' refused");
}

is_deeply(snapshot(), $before, 'invalid names created nothing');

# valid names: 255 characters is the limit

my @good_names = (
    'a', '0', 'a0', 'a.b', 'a_b', 'a__b', 'a-b', 'a--b', 'a---b', 'a.b-c_d__e',
    'a/b', 'a/b/c/d/e', 'library/ubuntu', '0-0/1.1/2__2',
    ('a' x 127) . '/' . ('b' x 127),
    ('c' x 100) . '/' . ('d' x 100) . '/' . ('e' x 53),
);

is(length $good_names[-1], 255, '255-char name built');

for my $n (@good_names) {
    my $show = length $n > 40 ? length($n) . '-char name' : "'$n'";

    $r = $t->req('GET', "/v2/$n/tags/list");
    is($r->{status}, 404, "tags list of unknown $show 404");
    is(RegTest::error_code($r), 'NAME_UNKNOWN', "tags list of unknown $show code");

    my $blob = "blob of $n";
    my $d = RegTest::digest($blob);
    $r = $t->req('POST', "/v2/$n/blobs/uploads/?digest=$d", content => $blob);
    is($r->{status}, 201, "push to $show");
    is($t->req('GET', "/v2/$n/blobs/$d")->{content}, $blob, "read back $show");
}

# only the valid repositories exist

my $repos = $t->root . '/docker/registry/v2/repositories';
my %found;
find({ no_chdir => 1, wanted => sub {
    my $p = $File::Find::name;
    if ($p =~ m{^\Q$repos\E/(.+)/_layers$}) {
        $found{$1} = 1;
    }
} }, $repos) if -d $repos;
is_deeply([sort keys %found], [sort @good_names], 'repositories on disk');

my @odd;
find({ no_chdir => 1, wanted => sub {
    my $p = substr $File::Find::name, length $t->root;
    push @odd, $p if $p =~ m{(^|/)\.\.?(/|$)|%|\.\.|//| };
} }, $t->root);
is("@odd", '', 'no odd paths in the store');

# nothing outside the store root

my %outside = map { $_ => 1 } grep { index($_, $t->root) != 0 }
              keys %{ snapshot() };
my %outside_before = map { $_ => 1 } grep { index($_, $t->root) != 0 }
                     keys %$before;
is_deeply(\%outside, \%outside_before, 'nothing created outside the store');

# names made of route words: the route is taken from the end of the path

for my $n ('blobs', 'manifests', 'tags', 'uploads', 'v2', 'list', 'a/blobs/b',
           'x/manifests/y', 'x/tags/list', 'x/blobs/uploads', 'blobs/uploads/x')
{
    my $blob = "route word $n";
    my $d = $t->push_blob($n, $blob);
    $r = $t->req('GET', "/v2/$n/blobs/$d");
    is($r->{content}, $blob, "route-word name '$n': blob");

    $r = $t->req('POST', "/v2/$n/blobs/uploads/");
    is($r->{status}, 202, "route-word name '$n': upload");
    like($r->{headers}{location} // '', qr{^/v2/\Q$n\E/blobs/uploads/[0-9a-f-]{36}$},
         "route-word name '$n': upload location");
    $r = $t->req('PUT', "$r->{headers}{location}?digest=$d", content => $blob);
    is($r->{status}, 201, "route-word name '$n': upload completed");

    my $img = $t->push_image($n, 'list');
    $r = $t->req('GET', "/v2/$n/manifests/list");
    is($r->{content}, $img->{manifest}, "route-word name '$n': manifest");

    $r = $t->req('GET', "/v2/$n/tags/list");
    is_deeply(eval { JSON::PP::decode_json($r->{content}) },
              { name => $n, tags => ['list'] }, "route-word name '$n': tags");
}

# tags

my @bad_tags = ('-a', '.a', 'a+b', 'a%20b', 'a~b', 'a!b', 'a' x 129, 'é');

for my $tag (@bad_tags) {
    my $show = length $tag > 40 ? length($tag) . '-char tag' : "'$tag'";

    check($t->req('GET', "/v2/a/manifests/$tag"), 400, 'TAG_INVALID',
          "manifest get $show");
    check($t->req('PUT', "/v2/a/manifests/$tag",
                  headers => { 'Content-Type' =>
                               'application/vnd.oci.image.manifest.v1+json' },
                  content => '{}'),
          400, 'TAG_INVALID', "manifest put $show");
    check($t->req('DELETE', "/v2/a/manifests/$tag"), 400, 'TAG_INVALID',
          "manifest delete $show");
}

for my $tag ('a', 'A', '_', '0', 'latest', 'v1.0.0-rc.1_x', 'a' x 128, '_A-.') {
    my $show = length $tag > 40 ? length($tag) . '-char tag' : "'$tag'";
    $r = $t->req('GET', "/v2/a/manifests/$tag");
    is($r->{status}, 404, "manifest get unknown $show 404");
    is(RegTest::error_code($r), 'MANIFEST_UNKNOWN', "manifest get unknown $show code");
}

# digests

my @bad_digests = (
    'sha256:' . substr($HEX, 0, 63),
    'sha256:' . $HEX . '0',
    'sha256:abc',
    'sha256:',
    'sha256:' . ('g' x 64),
    'sha256:' . uc($HEX),
    'sha256:' . substr($HEX, 0, 63) . 'E',
    'SHA256:' . $HEX,
    'md5:d41d8cd98f00b204e9800998ecf8427e',
    'sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709',
    'sha384:' . ('0' x 96),
    'sha512:' . $HEX,
    'sha512:' . ('0' x 127),
    ':' . $HEX,
    'sha256' . $HEX,
    'sha256:' . $HEX . ':',
    'sha256:' . substr($HEX, 0, 32) . '%20' . substr($HEX, 32),
);

for my $d (@bad_digests) {
    my $show = "'" . (length $d > 30 ? substr($d, 0, 20) . '...' . length($d)
                      : $d) . "'";

    check($t->req('GET', "/v2/a/blobs/$d"), 400, 'DIGEST_INVALID',
          "blob get $show");
    check($t->req('DELETE', "/v2/a/blobs/$d"), 400, 'DIGEST_INVALID',
          "blob delete $show");
    check($t->req('POST', "/v2/a/blobs/uploads/?digest=$d", content => 'x'),
          400, 'DIGEST_INVALID', "monolithic upload $show");

    next unless $d =~ /:/;

    # with a colon the reference is a digest, not a tag

    check($t->req('GET', "/v2/a/manifests/$d"), 400, 'DIGEST_INVALID',
          "manifest get $show");
    check($t->req('PUT', "/v2/a/manifests/$d",
                  headers => { 'Content-Type' =>
                               'application/vnd.oci.image.manifest.v1+json' },
                  content => '{}'),
          400, 'DIGEST_INVALID', "manifest put $show");
}

for my $d ('sha256:' . ('0' x 64), 'sha512:' . ('0' x 128)) {
    $r = $t->req('GET', "/v2/a/blobs/$d");
    is($r->{status}, 404, "blob get unknown " . substr($d, 0, 6));
    is(RegTest::error_code($r), 'BLOB_UNKNOWN',
       "blob get unknown " . substr($d, 0, 6) . ' code');
    $r = $t->req('GET', "/v2/a/manifests/$d");
    is($r->{status}, 404, "manifest get unknown " . substr($d, 0, 6));
    is(RegTest::error_code($r), 'MANIFEST_UNKNOWN',
       "manifest get unknown " . substr($d, 0, 6) . ' code');
}

# upload ids

$r = $t->req('POST', '/v2/a/blobs/uploads/');
is($r->{status}, 202, 'upload started');
my $uuid = $r->{headers}{'docker-upload-uuid'} // '';
like($uuid, qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
     'upload id form');

for my $id (uc $uuid, substr($uuid, 0, 35), $uuid . '0', 'xyz', '..', '.',
            '..%2f..%2f..%2fetc', '%2e%2e',
            '00000000-0000-0000-0000-000000000000',
            'ffffffff-ffff-ffff-ffff-ffffffffffff')
{
    for my $m ('GET', 'PATCH', 'PUT', 'DELETE') {
        my $q = $m eq 'PUT' ? "?digest=sha256:$HEX" : '';
        check($t->req($m, "/v2/a/blobs/uploads/$id$q",
                      $m =~ /^P/ ? (content => '') : ()),
              404, 'BLOB_UPLOAD_UNKNOWN', "upload $m '$id'");
    }
}

# the id is bound to its repository

check($t->req('GET', "/v2/b/blobs/uploads/$uuid"), 404, 'BLOB_UPLOAD_UNKNOWN',
      'upload id in another repository');
is($t->req('GET', "/v2/a/blobs/uploads/$uuid")->{status}, 204,
   'upload still alive');

$t->stop();

done_testing();
