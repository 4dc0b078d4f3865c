#!/usr/bin/perl

# Eviction marks the store with the garbage collector's mark: what a
# local repository holds is what its tags, revisions and manifests
# reference, not only what its layer links name.  A local image shares
# its layer with a mirrored image, and its own layer link to it is gone
# (as in a store another tool wrote): when the mirrored image is evicted,
# the layer stays, and the bytes the local image holds do not count
# against the bound.  A local manifest that does not parse stops the
# eviction.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);

use lib 't/lib';
use RegTest;
use MirrorTest;

my $K = 300 * 1024;

sub layer { substr("$_[0] layer " . rand() . ($_[0] x $K), 0, $K) }

my $shared = layer('s');

my $up = RegTest->new();
my %img;
$img{p} = $up->push_image('lib/p', 'v1', layers => [$shared]);
$img{$_} = $up->push_image("lib/$_", 'v1', layers => [layer($_)]) for qw(q r);

# p, q, r: 900 KiB of layers, of which the local image holds 300
my $m = MirrorTest::mirror('http://127.0.0.1:' . $up->port, ttl => '1h',
    location_extra => "registry_cache_max_size 500k;\n",
    opts => { workers => 2 });

sub pull { MirrorTest::pull_image($m, "up/lib/$_[0]", 'v1', $img{$_[0]}) }

my $local = $m->push_image('mine/app', 'v1', layers => [$shared]);
my $shared_digest = $local->{layers}[0];
is($shared_digest, $img{p}{layers}[0], 'the local image shares p\'s layer');
my $link = $m->layer_link('mine/app', $shared_digest);
ok(unlink($link), 'the local layer link to it removed');
(my $link_dir = $link) =~ s{/link$}{};
ok(rmdir($link_dir), '... and its directory');

# p's pull links the shared layer, and q's fetches its own, each a
# reference that keeps the blob from an eviction beginning within a
# second (the collector's protocol): the eviction comes later
ok(pull('p'), 'p pulled');
sleep 3;
ok(pull('q'), 'q pulled');
sleep 2;
ok(pull('r'), 'r pulled: over the bound');

ok(MirrorTest::gone_within($m->blob_path($img{q}{layers}[0])),
   'q\'s layer evicted: p\'s image, pulled first, did not free enough');
ok(!-e $m->blob_path($img{p}{digest}), 'p\'s manifest evicted');
ok(!-e $m->blob_path($img{p}{config}), 'p\'s config evicted');

my $path = $m->blob_path($shared_digest);
ok(-e $path, 'the shared layer kept: the local manifest references it');
is('sha256:' . sha256_hex(RegTest::slurp($path)), $shared_digest,
   '... its bytes whole');
ok(-e $m->blob_path($_), "r: blob $_ kept")
    for $img{r}{digest}, $img{r}{config}, @{ $img{r}{layers} };

my $r = $m->req('GET', '/v2/mine/app/manifests/v1',
                headers => { Accept => $local->{type} });
is($r->{status}, 200, 'the local image\'s manifest served');
is($m->req('GET', "/v2/mine/app/blobs/$local->{config}")->{status}, 200,
   'the local image\'s config served');

my $fetched = MirrorTest::upstream_hits($up, qr{GET /v2/lib/p/blobs/\Q$shared_digest\E});
ok(pull('p'), 'p pulled again');
is(MirrorTest::upstream_hits($up, qr{GET /v2/lib/p/blobs/\Q$shared_digest\E}),
   $fetched, '... its layer from the store, not fetched again');

# a local manifest that does not parse: what the local repositories hold
# is unknown, and the eviction removes nothing (as a collection would)
RegTest::spew($m->blob_path($local->{digest}), 'not a manifest');
sleep 2;
ok(pull('q'), 'q pulled again: over the bound');

ok(MirrorTest::within(20, sub {
       $m->error_log =~ /local manifest or tag is unreadable/ }),
   'the eviction refused, and said why');
ok(-e $m->blob_path($_), "blob $_ kept")
    for $img{q}{layers}[0], $img{r}{layers}[0], $shared_digest;

$m->stop;
$up->stop;

done_testing();
