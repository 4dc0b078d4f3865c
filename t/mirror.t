#!/usr/bin/perl

# The pull-through cache (registry_upstream): manifests by tag and by
# digest and blobs fetched once from a local upstream (a second nginx with
# this module), served from the store after; the tag's TTL; pushes to a
# mirrored repository refused; clients authorized before anything is
# fetched.

use strict;
use warnings;

use Test::More;

use lib 't/lib';
use RegTest;
use MirrorTest;

sub hits { MirrorTest::upstream_hits(@_) }

my $up = RegTest->new();
my $img = $up->push_image('library/busybox', 'latest',
                          layers => ['layer one ' . rand(), 'layer two']);

my $m = MirrorTest::mirror('http://127.0.0.1:' . $up->port, ttl => '5s',
    opts => { http_extra => "log_format cache '\$request \$registry_cache';" },
    location_extra => "access_log cache.log cache;\n",
    server_extra => "location = /metrics { registry_metrics; }\n");

# what $registry_cache said of the last of the $new (1) requests for
# $path made since the last call: nginx logs a request after its answer,
# which the client may have read first, so this waits for all $new lines
my %logged;

sub cache_of {
    my ($path, $new) = @_;
    my @l;
    for (1 .. 50) {
        @l = grep { /^\S+ \Q$path\E / }
             split /\n/, RegTest::slurp($m->dir . '/cache.log');
        last if @l >= ($logged{$path} // 0) + ($new // 1);
        select(undef, undef, undef, 0.1);
    }
    $logged{$path} = @l;
    return @l ? (split / /, $l[-1])[-1] : 'none';
}

# a manifest by tag: fetched, stored, served

my $r = $m->req('GET', '/v2/up/library/busybox/manifests/latest',
                headers => { Accept => $img->{type} });
is($r->{status}, 200, 'manifest by tag through the mirror');
is($r->{content}, $img->{manifest}, 'the upstream\'s bytes');
is($r->{headers}{'docker-content-digest'}, $img->{digest}, 'its digest');
is($r->{headers}{'content-type'}, $img->{type}, 'its media type');
is(hits($up, qr{"GET /v2/library/busybox/manifests/latest}), 1,
   'one upstream GET');
is(cache_of('/v2/up/library/busybox/manifests/latest'), 'miss',
   '$registry_cache: miss');

my $v2 = $m->root . '/docker/registry/v2';
ok(-f "$v2/repositories/up/library/busybox/_manifests/tags/latest/current/link",
   'the tag is in the store');

# within the TTL: nothing asked upstream

$r = $m->req('GET', '/v2/up/library/busybox/manifests/latest');
is($r->{status}, 200, 'again');
is(hits($up, qr{"(GET|HEAD) /v2/library/busybox/manifests/}), 1, 'no upstream request');
is(cache_of('/v2/up/library/busybox/manifests/latest'), 'hit',
   '$registry_cache: hit');

# library=on: the short name is the same repository

$r = $m->req('GET', '/v2/up/busybox/manifests/latest');
is($r->{content}, $img->{manifest}, 'library=on');

# containerd's ?ns=

$r = $m->req('GET', '/v2/library/busybox/manifests/latest?ns=up');
is($r->{content}, $img->{manifest}, '?ns= names the upstream');

# a blob: streamed, published, then local

my $layer = $img->{layers}[0];
$r = $m->req('GET', "/v2/up/library/busybox/blobs/$layer");
is($r->{status}, 200, 'blob through the mirror');
like($r->{content}, qr/^layer one /, 'its bytes');
is(RegTest::digest($r->{content}), $layer, 'the right bytes');
ok(-f $m->blob_path($layer), 'published in the store');
is(scalar(() = glob("$v2/_ngx_tmp/*")), 0, 'no temporary file left');

$r = $m->req('GET', "/v2/up/library/busybox/blobs/$layer");
is(RegTest::digest($r->{content}), $layer, 'again, from the store');
is(hits($up, qr{"GET /v2/library/busybox/blobs/$layer}), 1,
   'one upstream GET of the blob');

$r = $m->req('HEAD', "/v2/up/library/busybox/blobs/$img->{layers}[1]");
is($r->{status}, 200, 'HEAD of a blob not cached');
is($r->{headers}{'content-length'}, length 'layer two', 'its length');

# by digest

$r = $m->req('GET', "/v2/up/library/busybox/manifests/$img->{digest}");
is($r->{content}, $img->{manifest}, 'manifest by digest');

# unknown upstream

RegTest::check_error($m->req('GET', '/v2/up/library/nope/manifests/latest'),
                     404, 'MANIFEST_UNKNOWN', 'unknown upstream');
RegTest::check_error($m->req('GET', '/v2/up/library/busybox/blobs/'
                                    . RegTest::digest('no such blob')),
                     404, 'BLOB_UNKNOWN', 'unknown blob upstream');

# writes to a mirrored repository

RegTest::check_error($m->req('POST', '/v2/up/library/busybox/blobs/uploads/'),
                     405, 'UNSUPPORTED', 'push to a mirror');
RegTest::check_error($m->req('PUT', '/v2/up/library/busybox/manifests/x',
                             headers => { 'Content-Type' => $img->{type} },
                             content => $img->{manifest}),
                     405, 'UNSUPPORTED', 'manifest push to a mirror');

# local repositories beside the mirror

my $local = $m->push_image('mine/app', 'v1');
is($m->req('GET', '/v2/mine/app/manifests/v1')->{content}, $local->{manifest},
   'a local repository');

# after the TTL: a HEAD, unchanged

sleep 6;
$r = $m->req('GET', '/v2/up/library/busybox/manifests/latest');
is($r->{content}, $img->{manifest}, 'after the TTL');
is(hits($up, qr{"HEAD /v2/library/busybox/manifests/latest}), 1,
   'revalidated with a HEAD');
is(cache_of('/v2/up/library/busybox/manifests/latest'), 'revalidated',
   '$registry_cache: revalidated');
is(hits($up, qr{"GET /v2/library/busybox/manifests/}), 1,
   'no second GET (the digest was cached with the tag)');

# moved upstream: seen after the TTL

my $img2 = $up->push_image('library/busybox', 'latest');
$r = $m->req('GET', '/v2/up/library/busybox/manifests/latest');
is($r->{content}, $img->{manifest}, 'within the TTL: the old one');
sleep 6;
$r = $m->req('GET', '/v2/up/library/busybox/manifests/latest');
is($r->{content}, $img2->{manifest}, 'after the TTL: the moved tag');
is(hits($up, qr{"GET /v2/library/busybox/manifests/$img2->{digest}}), 1,
   'fetched by digest');

# the upstream stopped: served from the cache, stale tags say so

$up->stop;
sleep 6;
$r = $m->req('GET', '/v2/up/library/busybox/manifests/latest');
is($r->{status}, 200, 'upstream down: served');
is($r->{content}, $img2->{manifest}, 'the cached copy');
like($r->{headers}{warning} // '', qr/^110 /, 'with a Warning');
is(cache_of('/v2/up/library/busybox/manifests/latest', 3), 'stale',
   '$registry_cache: stale');
$r = $m->req('GET', "/v2/up/library/busybox/blobs/$layer");
is(RegTest::digest($r->{content}), $layer, 'a cached blob');
RegTest::check_error($m->req('GET', "/v2/up/library/busybox/blobs/"
                                    . $img2->{layers}[0]),
                     503, 'UNAVAILABLE', 'an uncached blob');
is(cache_of("/v2/up/library/busybox/blobs/$img2->{layers}[0]"),
   'upstream_error', '$registry_cache: upstream_error');
is(cache_of('/v2/mine/app/manifests/v1'), '-', 'nothing for a local pull');

my $metrics = $m->req('GET', '/metrics')->{content};
for my $result (qw(hit miss revalidated stale upstream_error)) {
    like($metrics, qr/^registry_cache_requests_total\{result="$result"\} [1-9]/m,
         "metrics: $result counted");
}
like($metrics, qr/^registry_upstream_requests_total [1-9]/m,
     'metrics: upstream requests counted');

$m->stop;

# a client without pull rights gets nothing fetched

$up = RegTest->new();
$up->push_image('library/busybox', 'latest');
$m = MirrorTest::mirror('http://127.0.0.1:' . $up->port,
    location_extra => "registry_access anonymous mine/** pull;\n");
$r = $m->req('GET', '/v2/up/library/busybox/manifests/latest');
is($r->{status}, 401, 'unauthorized');
is(hits($up, qr{"(GET|HEAD) /v2/library/}), 0, 'nothing asked upstream');
$r = $m->req('GET', '/v2/library/busybox/manifests/latest?ns=up');
is($r->{status}, 401, 'unauthorized with ?ns=');
is(hits($up, qr{"(GET|HEAD) /v2/library/}), 0, 'still nothing asked upstream');

$m->stop;
$up->stop;

done_testing();
