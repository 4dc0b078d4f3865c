#!/usr/bin/perl

# Eviction and image indexes: the children of a cached index are
# manifests of their own, pulled (here) before the index; over the bound
# they are the least recently pulled, yet they stay while the index that
# references them stays, and a later image goes instead.  Then the index
# is the least recently pulled: it goes, and its children, older than
# any image left, go next (the older first, while still over the bound),
# not a more recently pulled image.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use RegTest;
use MirrorTest;

my $K = 300 * 1024;
my $INDEX = 'application/vnd.oci.image.index.v1+json';

sub layer { substr("$_[0] layer " . rand() . ($_[0] x $K), 0, $K) }

my $up = RegTest->new();
my %img;
$img{$_} = $up->push_image('lib/multi', $_, layers => [layer($_)])
    for qw(x1 x2);
$img{$_} = $up->push_image("lib/$_", 'v1', layers => [layer($_)])
    for qw(z w v);

my $index = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => $INDEX,
    manifests => [ map { {
        mediaType => 'application/vnd.oci.image.manifest.v1+json',
        digest => $img{$_}{digest},
        size => length $img{$_}{manifest},
        platform => { architecture => $_ eq 'x1' ? 'amd64' : 'arm64',
                      os => 'linux' },
    } } qw(x1 x2) ],
});
is($up->push_manifest('lib/multi', 'v1', $index, $INDEX)->{status}, 201,
   'upstream: the index of x1 and x2');

# x1, x2, z: 900 KiB of layers; w puts the cache over 1000 KiB
my $m = MirrorTest::mirror('http://127.0.0.1:' . $up->port, ttl => '1h',
    location_extra => "registry_cache_max_size 1000k;\n",
    opts => { workers => 2 });

sub pull { MirrorTest::pull_image($m, "up/$_[0]", $_[1], $_[2]) }

for my $c (qw(x1 x2)) {
    ok(pull('lib/multi', $img{$c}{digest}, $img{$c}),
       "child $c pulled by digest");
    sleep 1;
}
ok(pull('lib/z', 'v1', $img{z}), 'z pulled');
sleep 1;
ok(pull('lib/multi', 'v1'), 'the index pulled by tag');
sleep 1;
ok(pull('lib/w', 'v1', $img{w}), 'w pulled: over the bound');

ok(MirrorTest::gone_within($m->blob_path($img{z}{layers}[0])),
   'z, pulled after the children, evicted');
ok(-e $m->blob_path($img{$_}{layers}[0]),
   "child $_ kept: the index that references it is kept") for qw(x1 x2);
ok(-e $m->blob_path(RegTest::digest($index)), 'the index kept');

# v next: the index is now the least recently pulled unit
sleep 1;
ok(pull('lib/v', 'v1', $img{v}), 'v pulled: over the bound again');

ok(MirrorTest::gone_within($m->blob_path(RegTest::digest($index))),
   'the index, least recently pulled, evicted');
ok(MirrorTest::gone_within($m->blob_path($img{x1}{layers}[0])),
   'child x1, the older, no longer referenced: evicted next');
ok(!-e $m->blob_path($img{x1}{digest}), '... its manifest too');
ok(-e $m->blob_path($img{$_}{layers}[0]),
   "$_ kept: under the bound again") for qw(x2 w v);

$m->stop;
$up->stop;

done_testing();
