#!/usr/bin/perl

# Symbolic links planted in the store are never followed: a link loop
# under repositories/ leaves _catalog answering (and listing the real
# repositories); a tag directory that is a link to another repository's
# tag neither serves that tag nor lets a DELETE of a manifest remove it;
# a layer link (or its directory, or _layers) that is a link into another
# repository is no link at all; nor is a session directory or a whole
# repository directory that is a link, for reads and deletes; writes
# through such a link land nowhere near the repository it points at (and
# are refused, 403 DENIED: the link will never be followed, so retrying
# cannot help; not a 500 with a [crit]).  Each link found is logged at
# [warn], under its own path.

use strict;
use warnings;

use Test::More;
use File::Path qw(make_path remove_tree);
use JSON::PP;

use lib 't/lib';
use RegTest;

my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';

my $t = RegTest->new(delete => 1);
my $v2 = $t->root . '/docker/registry/v2';
my $repos = "$v2/repositories";

sub dec { my ($text) = @_; return eval { decode_json($text) } || {}; }

sub catalog {
    my $r = $t->req('GET', '/v2/_catalog?n=1000');
    return ($r, dec($r->{content})->{repositories} || []);
}

sub tags {
    my ($name) = @_;
    my $r = $t->req('GET', "/v2/$name/tags/list");
    return [ sort @{ dec($r->{content})->{tags} || [] } ];
}

# warn lines added to error.log since the last call
my $seen = 0;

sub new_log {
    my $log = $t->error_log;
    my $new = substr($log, $seen);
    $seen = length $log;
    return $new;
}

# ---- a repository "victim" with an image, and "lib/real" ----

my $config = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers",'
             . '"diff_ids":[]}}';
my $layer = "the victim's layer\n" x 10;

my $img = $t->push_image('victim', 't', config => $config,
                         layers => [$layer]);

# ---- a tag directory that is a link into another repository ----

# "evil" holds the very same manifest, tagged "u"
$t->push_blob('evil', $config);
$t->push_blob('evil', $layer);
my $r = $t->push_manifest('evil', 'u', $img->{manifest}, $OCI_M);
is($r->{status}, 201, 'the same manifest pushed into evil as evil:u');

symlink('../../../victim/_manifests/tags/t', "$repos/evil/_manifests/tags/t")
    or die "symlink: $!";
new_log();

$r = $t->req('GET', '/v2/evil/manifests/t', headers => { Accept => $OCI_M });
is($r->{status}, 404, 'GET evil:t through the linked tag: 404');
is(RegTest::error_code($r), 'MANIFEST_UNKNOWN',
   'GET evil:t through the linked tag: MANIFEST_UNKNOWN');
$r = $t->req('HEAD', '/v2/evil/manifests/t', headers => { Accept => $OCI_M });
is($r->{status}, 404, 'HEAD evil:t through the linked tag: 404');
like(new_log(), qr/\[warn\].*symbolic link.*never follows/,
     'GET evil:t: [warn] line about the link');

is_deeply(tags('evil'), ['u'], 'evil tags/list: only u, not the link');

$r = $t->req('DELETE', "/v2/evil/manifests/$img->{digest}");
is($r->{status}, 202, 'DELETE evil\'s manifest by digest: 202');

is($t->req('GET', '/v2/evil/manifests/u')->{status}, 404,
   'evil:u went with its manifest');
is($t->req('GET', "/v2/evil/manifests/$img->{digest}")->{status}, 404,
   'evil\'s revision went');

ok(-f "$repos/victim/_manifests/tags/t/current/link",
   'victim\'s tags/t/current/link still on disk');
my ($alg, $hex) = split /:/, $img->{digest};
ok(-f "$repos/victim/_manifests/tags/t/index/$alg/$hex/link",
   'victim\'s tag history still on disk');
is_deeply(tags('victim'), ['t'], 'victim tags/list still has t');
$r = $t->req('GET', '/v2/victim/manifests/t', headers => { Accept => $OCI_M });
is($r->{status}, 200, 'GET victim:t: 200');
is($r->{content}, $img->{manifest}, 'GET victim:t: the manifest');
ok(-l "$repos/evil/_manifests/tags/t", 'the planted link itself is left alone');

# a DELETE by tag of the linked tag: nothing of victim's goes either
$r = $t->req('DELETE', '/v2/evil/manifests/t');
ok(-f "$repos/victim/_manifests/tags/t/current/link",
   'DELETE evil:t: victim\'s tag still on disk');
is($t->req('GET', '/v2/victim/manifests/t')->{status}, 200,
   'DELETE evil:t: victim:t still 200');

# ---- layer links that are links into another repository ----

my $secret = "victim's secret blob";
my $ds = $t->push_blob('victim', $secret);
(my $shex = $ds) =~ s/^sha256://;

# the link file itself
make_path("$repos/evil/_layers/sha256/$shex");
symlink("../../../../victim/_layers/sha256/$shex/link",
        "$repos/evil/_layers/sha256/$shex/link") or die "symlink: $!";
ok(-f "$repos/evil/_layers/sha256/$shex/link", 'planted link resolves');
new_log();

$r = $t->req('GET', "/v2/evil/blobs/$ds");
is($r->{status}, 404, 'blob through a linked layer link: GET 404');
is(RegTest::error_code($r), 'BLOB_UNKNOWN',
   'blob through a linked layer link: BLOB_UNKNOWN');
isnt($r->{content}, $secret, 'blob through a linked layer link: no bytes');
is($t->req('HEAD', "/v2/evil/blobs/$ds")->{status}, 404,
   'blob through a linked layer link: HEAD 404');
like(new_log(), qr/\[warn\].*symbolic link.*never follows/,
     'blob through a linked layer link: [warn] line');

# the link's directory
remove_tree("$repos/evil/_layers/sha256/$shex");
symlink("../../../victim/_layers/sha256/$shex",
        "$repos/evil/_layers/sha256/$shex") or die "symlink: $!";
ok(-f "$repos/evil/_layers/sha256/$shex/link", 'planted directory resolves');

$r = $t->req('GET', "/v2/evil/blobs/$ds");
is($r->{status}, 404, 'blob through a linked layer directory: GET 404');
is(RegTest::error_code($r), 'BLOB_UNKNOWN',
   'blob through a linked layer directory: BLOB_UNKNOWN');

# a DELETE of the blob in evil leaves victim's link
$r = $t->req('DELETE', "/v2/evil/blobs/$ds");
is($r->{status}, 404, 'DELETE of the blob through the linked directory: 404');
ok(-f "$repos/victim/_layers/sha256/$shex/link",
   'victim\'s layer link still on disk');
$r = $t->req('GET', "/v2/victim/blobs/$ds");
ok($r->{status} == 200 && $r->{content} eq $secret,
   'victim still serves the blob');

# the whole _layers directory of a repository (victim pushes the blob
# again should the delete above have taken its link)
$t->push_blob('victim', $secret);
remove_tree("$repos/evil/_layers");
symlink('../victim/_layers', "$repos/evil/_layers") or die "symlink: $!";

$r = $t->req('GET', "/v2/evil/blobs/$ds");
is($r->{status}, 404, 'blob through a linked _layers: GET 404');
is(RegTest::error_code($r), 'BLOB_UNKNOWN',
   'blob through a linked _layers: BLOB_UNKNOWN');
is($t->req('GET', "/v2/victim/blobs/$ds")->{status}, 200,
   'victim serves the blob (the link into its _layers leads somewhere)');

# ---- an upload session directory that is a link to victim's session ----

$r = $t->req('POST', '/v2/victim/blobs/uploads/');
my $vloc = $r->{headers}{location};
my ($vid) = $vloc =~ m{/([^/]+)$};
$t->req('PATCH', $vloc, content => 'victim session bytes',
        headers => { 'Content-Range' => '0-19' });
make_path("$repos/evil/_uploads");
symlink("../../victim/_uploads/$vid", "$repos/evil/_uploads/$vid")
    or die "symlink: $!";

my $eloc = "/v2/evil/blobs/uploads/$vid";
$r = $t->req('GET', $eloc);
is($r->{status}, 404, 'linked session: GET 404');
is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN',
   'linked session: BLOB_UPLOAD_UNKNOWN');
is($t->req('PATCH', $eloc, content => 'evil',
           headers => { 'Content-Range' => '20-23' })->{status}, 404,
   'linked session: PATCH 404');
is($t->req('DELETE', $eloc)->{status}, 404, 'linked session: DELETE 404');
$r = $t->req('GET', $vloc);
is($r->{status}, 204, 'victim\'s session is still there');
is($r->{headers}{range}, '0-19', 'victim\'s session keeps its bytes');
is(-s "$repos/victim/_uploads/$vid/data", 20,
   'victim\'s session data file is untouched');

# ---- a repository directory that is a link to victim ----

symlink('victim', "$repos/alias") or die "symlink: $!";

$r = $t->req('GET', '/v2/alias/manifests/t', headers => { Accept => $OCI_M });
is($r->{status}, 404, 'linked repository: GET alias:t 404');
is(RegTest::error_code($r), 'MANIFEST_UNKNOWN',
   'linked repository: MANIFEST_UNKNOWN');
is($t->req('GET', "/v2/alias/blobs/$ds")->{status}, 404,
   'linked repository: GET of victim\'s blob 404');
$r = $t->req('GET', '/v2/alias/tags/list');
is($r->{status}, 404, 'linked repository: tags/list 404');
is($t->req('DELETE', "/v2/alias/manifests/$img->{digest}")->{status}, 404,
   'linked repository: DELETE of victim\'s manifest 404');
is($t->req('DELETE', "/v2/alias/blobs/$ds")->{status}, 404,
   'linked repository: DELETE of victim\'s blob 404');
is($t->req('DELETE', '/v2/alias/manifests/t')->{status}, 404,
   'linked repository: DELETE of victim\'s tag 404');
is($t->req('GET', '/v2/victim/manifests/t')->{status}, 200,
   'linked repository: victim:t still 200');
is($t->req('GET', "/v2/victim/manifests/$img->{digest}")->{status}, 200,
   'linked repository: victim\'s manifest still 200 by digest');
is($t->req('GET', "/v2/victim/blobs/$ds")->{status}, 200,
   'linked repository: victim\'s blob still 200');

$t->stop;

# ---- writes through a planted link: nothing lands in victim, and the
# push is refused (403 DENIED), not a 500 with a [crit] ----

$t = RegTest->new();
$repos = $t->root . '/docker/registry/v2/repositories';
$img = $t->push_image('victim', 't', config => $config, layers => [$layer]);

symlink('victim', "$repos/alias") or die "symlink: $!";
$t->push_blob('evil', 'a blob of evil');
symlink('../victim/_uploads', "$repos/evil/_uploads") or die "symlink: $!";
$t->push_blob('evil3', 'a blob of evil3');
remove_tree("$repos/evil3/_layers");
symlink('../victim/_layers', "$repos/evil3/_layers") or die "symlink: $!";

sub victim_layer_link { -e $t->layer_link('victim', $_[0]) }

sub entries {
    my ($dir) = @_;
    opendir(my $dh, $dir) or return '';
    return join ' ', sort grep { !/^\./ } readdir $dh;
}

my $mono = 'pushed into alias';
my $dm = RegTest::digest($mono);
$r = $t->req('POST', "/v2/alias/blobs/uploads/?digest=$dm", content => $mono);
is($r->{status}, 403, 'monolithic push into a linked repository: 403');
is(RegTest::error_code($r), 'DENIED', 'monolithic push into a linked repository: DENIED');
ok(!victim_layer_link($dm), 'monolithic push into alias: no link in victim');
is($t->req('HEAD', "/v2/victim/blobs/$dm")->{status}, 404,
   'monolithic push into alias: victim does not serve it');

$r = $t->req('POST', '/v2/alias/blobs/uploads/');
is($r->{status}, 403, 'upload session in a linked repository: 403');
is(RegTest::error_code($r), 'DENIED', 'upload session in a linked repository: DENIED');
is(entries("$repos/victim/_uploads"), '',
   'upload session in alias: none in victim\'s _uploads');

my $idx = '{"schemaVersion":2,"mediaType":'
          . '"application/vnd.oci.image.index.v1+json","manifests":[]}';
$r = $t->push_manifest('alias', 'idx', $idx,
                       'application/vnd.oci.image.index.v1+json');
is($r->{status}, 403, 'manifest PUT into a linked repository: 403');
is(RegTest::error_code($r), 'DENIED', 'manifest PUT into a linked repository: DENIED');
is($t->req('GET', '/v2/victim/manifests/idx')->{status}, 404,
   'manifest PUT into alias: no tag idx in victim');
is_deeply(tags('victim'), ['t'], 'manifest PUT into alias: victim\'s tags');

$r = $t->req('POST', '/v2/evil/blobs/uploads/');
is($r->{status}, 403, 'upload session under a linked _uploads: 403');
is(RegTest::error_code($r), 'DENIED', 'upload session under a linked _uploads: DENIED');
is(entries("$repos/victim/_uploads"), '',
   'upload session under evil\'s linked _uploads: none in victim\'s _uploads');

my $mono3 = 'pushed into evil3';
my $dm3 = RegTest::digest($mono3);
$r = $t->req('POST', "/v2/evil3/blobs/uploads/?digest=$dm3", content => $mono3);
is($r->{status}, 403, 'monolithic push under a linked _layers: 403');
is(RegTest::error_code($r), 'DENIED', 'monolithic push under a linked _layers: DENIED');
ok(!victim_layer_link($dm3),
   'monolithic push under evil3\'s linked _layers: no link in victim');

$t->stop;

# ---- link loops under repositories/: each in a store of its own, linked
# before the catalog is first asked for (a worker walks repositories/ then)

for my $case (['self', '.'], ['up', '..'], ['deep/down', '../..']) {
    my ($link, $target) = @$case;
    my $what = "loop/$link -> \"$target\"";

    $t = RegTest->new();
    $repos = $t->root . '/docker/registry/v2/repositories';
    $t->push_blob('lib/real', 'a blob of lib/real');
    $t->push_blob('victim', 'a blob of victim');
    make_path("$repos/loop/_layers");
    (my $parent = "$repos/loop/$link") =~ s{/[^/]+$}{};
    make_path($parent);
    symlink($target, "$repos/loop/$link") or die "symlink: $!";

    my ($r, $names) = catalog();
    is($r->{status}, 200, "$what: catalog 200");
    is(RegTest::error_code($r), '', "$what: no error body");
    is_deeply($names, [qw(lib/real loop victim)],
              "$what: the real repositories, no name through the link");

    $r = $t->req('GET', '/v2/_catalog?n=1');
    is($r->{status}, 200, "$what: catalog ?n=1 200");
    is_deeply(dec($r->{content})->{repositories}, ['lib/real'],
              "$what: catalog ?n=1 first page");

    like($t->error_log, qr/\[warn\].*symbolic link.*never follows/,
         "$what: [warn] line about a symbolic link");
    like($t->error_log,
         qr/\[warn\].*symbolic link "repositories\/loop\/\Q$link\E"/,
         "$what: the [warn] line names the link's own path");

    $t->stop;
}

done_testing();
