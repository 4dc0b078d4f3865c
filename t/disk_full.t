#!/usr/bin/perl

# A full disk: the store on a 4 MiB tmpfs.  A push that runs out of space
# gets 507 with a JSON error and leaves nothing behind (no blob, no link,
# no temp file, no hidden upload); a chunked upload keeps its last
# complete chunk, the bytes of the chunk that failed are cut off at once
# (their space is free for other pushes), and it finishes once space is
# back; a manifest that cannot be stored leaves no tag.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Find;
use Digest::SHA qw(sha256_hex);

use lib 't/lib';
use RegTest;

plan(skip_all => 'mounting a tmpfs needs root') if $> != 0;

my $mnt = tempdir('regtest-tmpfs-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

system('mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', $mnt) == 0
    or plan(skip_all => 'this machine does not allow a tmpfs mount');

END { system('umount', $mnt) if $mnt && -d $mnt; }

my $t = RegTest->new(root => "$mnt/store",
                     expect_in_log => qr/\[crit\].*No space left on device/);
my $v2 = "$mnt/store/docker/registry/v2";

sub bytes { my ($seed, $len) = @_; substr(sha256_hex($seed) x ($len / 64 + 1), 0, $len) }
sub code { RegTest::error_code($_[0]) // '' }

sub leftovers {
    my @found;
    find(sub { push @found, $File::Find::name if -f $_ },
         grep { -d } "$v2/_ngx_tmp", glob("$v2/repositories/*/_uploads"));
    return @found;
}

my $a = bytes('a', 2_500_000);
my $da = $t->push_blob('full/repo', $a);
ok($da, 'a 2.5 MB blob fits');

# ---- monolithic push that does not fit ----

my $b = bytes('b', 3_000_000);
my $db = RegTest::digest($b);
my $r = $t->req('POST', "/v2/full/repo/blobs/uploads/?digest=$db",
                content => $b);
is($r->{status}, 507, 'monolithic push on a full disk: 507');
is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
   'api version header');
ok(code($r), 'JSON error body');

(my $hex = $db) =~ s/^sha256://;
ok(!-e "$v2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex",
   'no blob directory for it');
ok(!-e "$v2/repositories/full/repo/_layers/sha256/$hex", 'no layer link');
is_deeply([leftovers()], [], 'no temp file, no hidden upload left');

$r = $t->req('GET', "/v2/full/repo/blobs/$db");
is($r->{status}, 404, 'the blob is unknown');

# ---- a chunked upload across the full disk ----

$r = $t->req('POST', '/v2/full/repo/blobs/uploads/');
is($r->{status}, 202, 'upload session');
my $loc = $r->{headers}{location};

my $c = bytes('c', 2_000_000);
my $dc = RegTest::digest($c);
my ($c1, $c2) = (substr($c, 0, 500_000), substr($c, 500_000));

$r = $t->req('PATCH', $loc, content => $c1,
             headers => { 'Content-Range' => '0-499999' });
is($r->{status}, 202, 'first chunk fits');

$r = $t->req('PATCH', $loc, content => $c2,
             headers => { 'Content-Range' => '500000-1999999' });
is($r->{status}, 507, 'second chunk on a full disk: 507');

# the bytes of the failed chunk are cut off at once: the data file is as
# long as the committed chunk, and their space is free again
my ($id) = $loc =~ m{/([^/]+)$};
is(-s "$v2/repositories/full/repo/_uploads/$id/data", 500_000,
   'after the 507 the data file holds the committed chunk only');

$r = $t->req('GET', $loc);
is($r->{status}, 204, 'upload still there');
is($r->{headers}{range}, '0-499999', 'at its last complete chunk');

# 600 kB fit only where the failed chunk's bytes are gone
my $e = bytes('e', 600_000);
my $de = RegTest::digest($e);
$r = $t->req('POST', "/v2/full/other/blobs/uploads/?digest=$de", content => $e);
is($r->{status}, 201, 'right after the 507 another push of 600 kB fits');

# the session goes on from its committed chunk without any space freed
$r = $t->req('PATCH', $loc, content => substr($c, 500_000, 100_000),
             headers => { 'Content-Range' => '500000-599999' });
is($r->{status}, 202, 'a 100 kB chunk right after the 507: 202');
is($r->{headers}{range}, '0-599999',
   'a 100 kB chunk right after the 507: range');
is(-s "$v2/repositories/full/repo/_uploads/$id/data", 600_000,
   'the data file holds both chunks');

# space comes back (as a garbage collection would give it)
(my $ahex = $da) =~ s/^sha256://;
unlink("$v2/blobs/sha256/" . substr($ahex, 0, 2) . "/$ahex/data")
    or die "unlink: $!";

$r = $t->req('PATCH', $loc, content => substr($c, 600_000),
             headers => { 'Content-Range' => '600000-1999999' });
is($r->{status}, 202, 'the rest of the blob, with space');

$r = $t->req('PUT', "$loc?digest=$dc");
is($r->{status}, 201, 'upload completed');

$r = $t->req('GET', "/v2/full/repo/blobs/$dc");
ok($r->{status} == 200 && $r->{content} eq $c, 'blob reads back whole');

# ---- a manifest on a full disk ----

my $config = '{"architecture":"amd64","os":"linux"}';
my $dconf = $t->push_blob('full/repo', $config);
my $manifest = qq({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$dconf","size":) . length($config) . qq(},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$dc","size":2000000}]});

open(my $fill, '>', "$mnt/filler") or die $!;
my $block = 'f' x 65536;
1 while print $fill $block;
close $fill;

$r = $t->push_manifest('full/repo', 'v1', $manifest,
                       'application/vnd.oci.image.manifest.v1+json');
is($r->{status}, 507, 'manifest push on a full disk: 507');

$r = $t->req('GET', '/v2/full/repo/manifests/v1');
is($r->{status}, 404, 'no tag points at it');
is(code($r), 'MANIFEST_UNKNOWN', 'MANIFEST_UNKNOWN');
is_deeply([leftovers()], [], 'no temp file left');

unlink("$mnt/filler");

$r = $t->push_manifest('full/repo', 'v1', $manifest,
                       'application/vnd.oci.image.manifest.v1+json');
is($r->{status}, 201, 'the same push with space');

$r = $t->req('GET', '/v2/full/repo/manifests/v1');
is($r->{content}, $manifest, 'manifest by tag');

$t->stop;
done_testing();
