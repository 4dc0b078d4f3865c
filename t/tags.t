#!/usr/bin/perl

# GET /v2/<name>/tags/list: sorting and pagination.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $t = RegTest->new();

my $img = $t->push_image('lib/app', 'z');

my @tags = ('b', 'a', 'A', '1.0', '_x', 'a-b', 'a.b', 'Z', 'a_b', '10', '9',
            'v' x 128);
for my $tag (@tags) {
    my $r = $t->push_manifest('lib/app', $tag, $img->{manifest}, $img->{type});
    die "push $tag: $r->{status}\n" unless $r->{status} == 201;
}

# What the list must be, written out in byte order (distribution's Go
# sort.Strings), not computed: digits (0x30-0x39) before upper case (0x41-),
# "_" (0x5f) between upper and lower case (0x61-), and within "a?b" the
# separators "-" (0x2d) < "." (0x2e) < "_" (0x5f); "10" before "9" (no
# numeric order) and "A" before "a" (no case folding).
my @sorted = ('1.0', '10', '9', 'A', 'Z', '_x', 'a', 'a-b', 'a.b', 'a_b',
              'b', 'v' x 128, 'z');

# whether a list is strictly increasing, byte by byte (a shorter prefix
# first), compared on the bytes themselves

sub byte_order {
    my @l = @_;
    for my $i (1 .. $#l) {
        my @x = unpack 'C*', $l[$i - 1];
        my @y = unpack 'C*', $l[$i];
        my $k = 0;
        $k++ while $k < @x && $k < @y && $x[$k] == $y[$k];
        my $less = ($k == @x && $k < @y) || ($k < @x && $k < @y && $x[$k] < $y[$k]);
        return "'$l[$i - 1]' is not before '$l[$i]'" unless $less;
    }
    return 'in byte order';
}

is(byte_order(@sorted), 'in byte order', 'the expected list is in byte order');
is_deeply([sort @sorted], [sort 'z', @tags],
          'the expected list holds exactly the tags pushed');

sub list {
    my ($path) = @_;
    my $r = $t->req('GET', $path);
    my $j = eval { decode_json($r->{content}) } || {};
    return ($r, $j);
}

my ($r, $j) = list('/v2/lib/app/tags/list');
is($r->{status}, 200, 'list');
like($r->{headers}{'content-type'}, qr{^application/json\b}, 'list content-type');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'list api version');
is($j->{name}, 'lib/app', 'list name');
is_deeply($j->{tags}, \@sorted, 'list sorted');
is(byte_order(@{ $j->{tags} || [] }), 'in byte order', 'list in byte order');
is($r->{headers}{link}, undef, 'list without n: no link');

# pages of 5

($r, $j) = list('/v2/lib/app/tags/list?n=5');
is($r->{status}, 200, 'page 1');
is_deeply($j->{tags}, [@sorted[0 .. 4]], 'page 1 tags');
is($j->{name}, 'lib/app', 'page 1 name');
is($r->{headers}{link}, '</v2/lib/app/tags/list?last=Z&n=5>; rel="next"',
   'page 1 link');

($r, $j) = list('/v2/lib/app/tags/list?last=Z&n=5');
is($r->{status}, 200, 'page 2');
is_deeply($j->{tags}, [@sorted[5 .. 9]], 'page 2 tags');
is($r->{headers}{link}, '</v2/lib/app/tags/list?last=a_b&n=5>; rel="next"',
   'page 2 link');

($r, $j) = list('/v2/lib/app/tags/list?last=a_b&n=5');
is($r->{status}, 200, 'page 3');
is_deeply($j->{tags}, [@sorted[10 .. 12]], 'page 3 tags');
is($r->{headers}{link}, undef, 'last page: no link');

# parameters in the other order, and n exactly what is left

($r, $j) = list('/v2/lib/app/tags/list?n=3&last=a_b');
is_deeply($j->{tags}, [@sorted[10 .. 12]], 'n before last');
is($r->{headers}{link}, undef, 'n equal to what is left: no link');

($r, $j) = list('/v2/lib/app/tags/list?n=13');
is_deeply($j->{tags}, \@sorted, 'n equal to the count');
is($r->{headers}{link}, undef, 'n equal to the count: no link');

($r, $j) = list('/v2/lib/app/tags/list?n=100');
is_deeply($j->{tags}, \@sorted, 'n above the count');
is($r->{headers}{link}, undef, 'n above the count: no link');

($r, $j) = list('/v2/lib/app/tags/list?n=1');
is_deeply($j->{tags}, ['1.0'], 'n=1');
is($r->{headers}{link}, '</v2/lib/app/tags/list?last=1.0&n=1>; rel="next"',
   'n=1 link');

# n=0: an empty list and no Link, though tags remain (also with last)

for my $q ('n=0', 'n=0&last=a', 'last=1.0&n=0') {
    ($r, $j) = list("/v2/lib/app/tags/list?$q");
    is($r->{status}, 200, "$q: status");
    is($j->{name}, 'lib/app', "$q: name");
    is_deeply($j->{tags}, [], "$q: tags is []") or diag($r->{content});
    is($r->{headers}{link}, undef, "$q: no link");
}

# last alone; last between and after tags

($r, $j) = list('/v2/lib/app/tags/list?last=a');
is_deeply($j->{tags}, [@sorted[7 .. 12]], 'last alone');
is($r->{headers}{link}, undef, 'last alone: no link');

($r, $j) = list('/v2/lib/app/tags/list?last=a.c&n=2');
is_deeply($j->{tags}, ['a_b', 'b'], 'last not a tag');
is($r->{headers}{link}, '</v2/lib/app/tags/list?last=b&n=2>; rel="next"',
   'last not a tag link');

($r, $j) = list('/v2/lib/app/tags/list?last=z');
is($r->{status}, 200, 'last after all tags');
is_deeply($j->{tags}, [], 'last after all tags: empty');

# walking all pages by the Link header

my @all;
my $path = '/v2/lib/app/tags/list?n=4';
my $pages = 0;
while ($path && $pages++ < 10) {
    ($r, $j) = list($path);
    push @all, @{ $j->{tags} || [] };
    ($path) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"$/;
}
is_deeply(\@all, \@sorted, 'following links gives all tags');
is($pages, 4, 'following links: 4 pages');

# a deleted or moved tag is listed correctly

my $img2 = $t->push_image('lib/app', 'moved');
$t->push_manifest('lib/app', 'moved', $img->{manifest}, $img->{type});
($r, $j) = list('/v2/lib/app/tags/list');
is_deeply($j->{tags}, [@sorted[0 .. 10], 'moved', @sorted[11, 12]],
          'moved tag listed once, between b and v...');

# many tags, walked in pages of 32

my @many = map { sprintf 't%04d', $_ } reverse 1 .. 200;
my $mimg = $t->push_image('many', shift @many);
my $failed = 0;
for my $tag (@many) {
    my $r = $t->push_manifest('many', $tag, $mimg->{manifest}, $mimg->{type});
    $failed++ unless $r->{status} == 201;
}
push @many, 't0200';
is($failed, 0, '199 more tags pushed');
($r, $j) = list('/v2/many/tags/list');
my @many_sorted = map { sprintf 't%04d', $_ } 1 .. 200;
is_deeply($j->{tags}, \@many_sorted, '200 tags sorted');

@all = ();
$path = '/v2/many/tags/list?n=32';
$pages = 0;
while ($path && $pages++ < 20) {
    ($r, $j) = list($path);
    push @all, @{ $j->{tags} || [] };
    ($path) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"$/;
}
is_deeply(\@all, \@many_sorted, '200 tags in pages');
is($pages, 7, '200 tags: 7 pages');

# unknown repositories

($r, $j) = list('/v2/nosuch/tags/list');
is($r->{status}, 404, 'unknown repository');
is(RegTest::error_code($r), 'NAME_UNKNOWN', 'unknown repository code');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'unknown repository api version');

($r, $j) = list('/v2/lib/tags/list');
is($r->{status}, 404, 'parent of a repository') or diag($r->{content});
is(RegTest::error_code($r), 'NAME_UNKNOWN', 'parent of a repository code');

# nested names

my $n = $t->push_image('a/b/c', 'deep');
($r, $j) = list('/v2/a/b/c/tags/list');
is($r->{status}, 200, 'nested repository');
is($j->{name}, 'a/b/c', 'nested repository name');
is_deeply($j->{tags}, ['deep'], 'nested repository tags');

$t->push_manifest('a/b/c', 'deeper', $n->{manifest}, $n->{type});
($r, $j) = list('/v2/a/b/c/tags/list?n=1');
is($r->{headers}{link}, '</v2/a/b/c/tags/list?last=deep&n=1>; rel="next"',
   'nested repository link');

# the worker caches a tag list once its directory has been unchanged for
# 2 s: every change after that must still show at once, in every worker

{
    my $c = RegTest->new(delete => 1, workers => 2);
    my $ci = $c->push_image('cached', 'a');
    $c->push_manifest('cached', 'b', $ci->{manifest}, $ci->{type});

    sleep 3;    # settled: the next listings fill the caches

    my $lists = sub {
        my %seen;
        for (1 .. 6) {
            my $r = $c->req('GET', '/v2/cached/tags/list');
            $seen{ join ',', @{ (eval { JSON::PP::decode_json($r->{content}) }
                                 || {})->{tags} || [] } }++;
        }
        return join ' | ', sort keys %seen;
    };

    is($lists->(), 'a,b', 'settled tags listed (caches filled)');

    $c->push_manifest('cached', 'c', $ci->{manifest}, $ci->{type});
    is($lists->(), 'a,b,c', 'a tag added after caching shows at once');

    is($c->req('DELETE', '/v2/cached/manifests/a')->{status}, 202,
       'tag deleted');
    is($lists->(), 'b,c', 'a tag deleted after caching is gone at once');

    sleep 3;
    is($lists->(), 'b,c', 'settled again');

    $c->push_manifest('cached', 'd', $ci->{manifest}, $ci->{type});
    is($c->req('DELETE', '/v2/cached/manifests/b')->{status}, 202,
       'tag deleted in the same moment');
    is($lists->(), 'c,d', 'two changes within one clock tick both show');

    $c->stop();
}

$t->stop();

done_testing();
