#!/usr/bin/perl

# Eviction under registry_cache_max_size: three images pulled through the
# mirror (each a layer of its own and a shared base layer), the first one
# pulled again; over the bound, the least recently pulled image goes (its
# manifest, its tag, its own layer), and every blob of the kept images
# stays, the shared base, a blob a local repository holds too, and one
# referenced again since the eviction began (the collector's protocol).
# Two blobs pulled by digest alone, which no cached manifest references,
# are units of their own: the one never pulled again goes first, the one
# pulled again after the image that goes stays.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use RegTest;
use MirrorTest;

my $K = 300 * 1024;
my $base = 'b' x $K;

my $up = RegTest->new();
my %img;
for my $n (qw(a b c)) {
    $img{$n} = $up->push_image("lib/$n", 'v1',
        layers => [$base, substr("$n layer " . rand() . ($n x $K), 0, $K)]);
}

# two strays of 60 KiB, each the layer of an image whose manifest the
# mirror never fetches
my %stray;
for my $n (qw(d e)) {
    my $i = $up->push_image("lib/$n", 'v1',
        layers => [substr("$n stray " . rand() . ($n x $K), 0, 60 * 1024)]);
    $stray{$n} = $i->{layers}[0];
}

# 4 x 300 KiB of layers and the strays: c's image puts it over 1100 KiB
my $m = MirrorTest::mirror('http://127.0.0.1:' . $up->port, ttl => '1h',
    location_extra => "registry_cache_max_size 1100k;\n",
    opts => { workers => 2 });

sub pull { MirrorTest::pull_image($m, "up/lib/$_[0]", 'v1', $img{$_[0]}) }

# a local repository holding b's config blob
my $cfg = $up->req('GET', "/v2/lib/b/blobs/$img{b}{config}")->{content};
$m->push_blob('mine/app', $cfg);

my $v2 = $m->root . '/docker/registry/v2';

sub pulled_at {
    my ($n) = @_;
    (my $hex = $img{$n}{digest}) =~ s/^sha256://;
    return (stat "$v2/repositories/up/lib/$n/_manifests/revisions/sha256/"
                 . "$hex/link")[9] // 0;
}

sub pull_stray {
    my ($n) = @_;
    my $b = $m->req('GET', "/v2/up/lib/$n/blobs/$stray{$n}");
    return $b->{status} == 200 && RegTest::digest($b->{content}) eq $stray{$n};
}

sub stray_pulled_at {
    my ($n) = @_;
    (my $hex = $stray{$n}) =~ s/^sha256://;
    return (stat "$v2/repositories/up/lib/$n/_layers/sha256/$hex/link")[9]
           // 0;
}

# the strays, then a, then b; a and the stray e pulled again, and those
# pulls flushed to their links (every 5 s), before c puts the cache over
# its bound

ok(pull_stray($_), "stray $_ pulled by digest") for qw(d e);
sleep 1;
ok(pull('a'), 'a pulled');
sleep 1;
ok(pull('b'), 'b pulled');
sleep 1;
is($m->req('GET', '/v2/up/lib/a/manifests/v1')->{status}, 200,
   'a pulled again');
ok(pull_stray('e'), 'stray e pulled again, from the cache');

ok(MirrorTest::within(30, sub { pulled_at('a') > pulled_at('b') }),
   'a\'s pull time flushed: b is the least recently pulled');
ok(stray_pulled_at('e') > pulled_at('b'),
   'stray e\'s pull time flushed to its layer link: later than b\'s pull');
ok(stray_pulled_at('d') < pulled_at('b'), 'stray d: pulled before b');

# b's manifest bytes referenced again after the eviction began, as a push
# or a local manifest naming them would (the time a refresh gives, here one
# in the future so that it is later than any eviction's start): kept
my $b_bytes = $m->blob_path($img{b}{digest});
utime(time, time + 3600, $b_bytes) or die "utime $b_bytes: $!";

ok(pull('c'), 'c pulled');

my $b_layer = $img{b}{layers}[1];
ok(MirrorTest::gone_within($m->blob_path($b_layer)), 'b\'s own layer evicted');
ok(!-e $m->blob_path($stray{d}), 'stray d, pulled least recently, evicted');
ok(!-e "$v2/repositories/up/lib/d/_layers/sha256/"
       . substr($stray{d}, 7) . '/link', '... and its layer link');
ok(-e $m->blob_path($stray{e}), 'stray e, pulled again after b, kept');
ok(!-e "$v2/repositories/up/lib/b/_manifests/tags/v1/current/link",
   'b\'s tag gone');
ok(-e $b_bytes, 'b\'s manifest bytes kept: referenced since the eviction began');
(my $b_hex = $img{b}{digest}) =~ s/^sha256://;
ok(!-e "$v2/_ngx_tombstones/sha256/$b_hex", '... back from their tombstone');
ok(!-e "$v2/blobs/sha256/" . substr($b_layer, 7, 2) . '/' . substr($b_layer, 7),
   'b\'s own layer: its directory gone too');
ok(-e $m->blob_path($img{b}{config}), 'b\'s config kept: a local repository holds it');
ok(-e $m->blob_path(RegTest::digest($base)), 'the shared base kept');

for my $n (qw(a c)) {
    ok(-e $m->blob_path($_), "$n: blob $_ kept")
        for $img{$n}{digest}, $img{$n}{config}, @{ $img{$n}{layers} };
}

like($m->error_log, qr/eviction freed \d+ bytes/, 'the eviction logged');

# b comes back on its next pull
ok(pull('b'), 'b pulled again, from the upstream');

$m->stop;
$up->stop;

done_testing();
