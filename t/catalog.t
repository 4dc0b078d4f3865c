#!/usr/bin/perl

# GET /v2/_catalog: sorting, nested names and pagination.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use File::Path qw(make_path);

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $t = RegTest->new();

sub list {
    my ($path) = @_;
    my $r = $t->req('GET', $path);
    my $j = eval { decode_json($r->{content}) } || {};
    return ($r, $j);
}

# empty store

my ($r, $j) = list('/v2/_catalog');
is($r->{status}, 200, 'empty catalog');
like($r->{headers}{'content-type'}, qr{^application/json\b}, 'empty catalog type');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'empty catalog api version');
is(ref $j->{repositories}, 'ARRAY', 'empty catalog is a list');
is_deeply($j->{repositories}, [], 'empty catalog is empty');

# repositories; byte order and component order agree on these names

my @repos = ('z-z', 'lib/app', 'b/x', 'b', 'a_b', 'a0', 'a/c', 'a/b/c', 'a');
$t->push_blob($_, "blob of $_") for grep { $_ ne 'lib/app' } @repos;
$t->push_image('lib/app', 'latest');

# not repositories: an empty directory, and the parents of nested ones

make_path($t->root . '/docker/registry/v2/repositories/junk/dir');

my @sorted = ('a', 'a/b/c', 'a/c', 'a0', 'a_b', 'b', 'b/x', 'lib/app', 'z-z');

($r, $j) = list('/v2/_catalog');
is($r->{status}, 200, 'catalog');
is_deeply($j->{repositories}, \@sorted, 'catalog sorted, nested, no parents');
ok(!exists $r->{headers}{link}, 'catalog without n: no link');

# pages

($r, $j) = list('/v2/_catalog?n=4');
is($r->{status}, 200, 'page 1');
is_deeply($j->{repositories}, [@sorted[0 .. 3]], 'page 1 repositories');
is($r->{headers}{link}, '</v2/_catalog?last=a0&n=4>; rel="next"', 'page 1 link');

($r, $j) = list('/v2/_catalog?last=a0&n=4');
is_deeply($j->{repositories}, [@sorted[4 .. 7]], 'page 2 repositories');
like($r->{headers}{link} // '',
     qr{^</v2/_catalog\?last=lib(/|%2F)app&n=4>; rel="next"$},
     'page 2 link');

for my $last ('lib/app', 'lib%2Fapp', 'lib%2fapp') {
    ($r, $j) = list("/v2/_catalog?last=$last&n=4");
    is($r->{status}, 200, "page 3 after $last");
    is_deeply($j->{repositories}, [$sorted[8]], "page 3 after $last repositories");
    ok(!exists $r->{headers}{link}, "page 3 after $last: no link");
}

($r, $j) = list('/v2/_catalog?n=2');
like($r->{headers}{link} // '', qr{^</v2/_catalog\?last=a(/|%2F)b(/|%2F)c&n=2>; rel="next"$},
     'nested last link');

for my $last ('a/b/c', 'a%2Fb%2Fc') {
    ($r, $j) = list("/v2/_catalog?last=$last&n=2");
    is_deeply($j->{repositories}, ['a/c', 'a0'], "after $last");
}

($r, $j) = list('/v2/_catalog?n=9');
is_deeply($j->{repositories}, \@sorted, 'n equal to the count');
ok(!exists $r->{headers}{link}, 'n equal to the count: no link');

($r, $j) = list('/v2/_catalog?n=1000');
is_deeply($j->{repositories}, \@sorted, 'n above the count');
ok(!exists $r->{headers}{link}, 'n above the count: no link');

($r, $j) = list('/v2/_catalog?last=b');
is_deeply($j->{repositories}, ['b/x', 'lib/app', 'z-z'], 'last alone');

($r, $j) = list('/v2/_catalog?last=c&n=2');
is_deeply($j->{repositories}, ['lib/app', 'z-z'], 'last not a repository');
ok(!exists $r->{headers}{link}, 'last not a repository: no link');

($r, $j) = list('/v2/_catalog?last=zzz');
is($r->{status}, 200, 'last after all');
is_deeply($j->{repositories} || [], [], 'last after all: empty');

# following the links

my @all;
my $path = '/v2/_catalog?n=2';
my $pages = 0;
while ($path && $pages++ < 10) {
    ($r, $j) = list($path);
    push @all, @{ $j->{repositories} || [] };
    ($path) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"$/;
}
is_deeply(\@all, \@sorted, 'following links gives all repositories');
is($pages, 5, 'following links: 5 pages');

# many repositories, walked in pages of 20

my @many = map { sprintf 'many/r%03d', $_ } reverse 1 .. 150;
$t->push_blob($_, 'many') for @many;

($r, $j) = list('/v2/_catalog');
is_deeply($j->{repositories}, [sort(@sorted, @many)], '159 repositories sorted');

@all = ();
$path = '/v2/_catalog?n=20';
$pages = 0;
while ($path && $pages++ < 20) {
    ($r, $j) = list($path);
    push @all, @{ $j->{repositories} || [] };
    ($path) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"$/;
}
is_deeply(\@all, [sort(@sorted, @many)], '159 repositories in pages');
is($pages, 8, '159 repositories: 8 pages');

# bad n

for my $n ('abc', '-1', '1x', '0x10') {
    ($r, $j) = list("/v2/_catalog?n=$n");
    is($r->{status}, 400, "n='$n'");
    is(RegTest::error_code($r), 'PAGINATION_NUMBER_INVALID', "n='$n' code");
    is($r->{headers}{'docker-distribution-api-version'}, $API, "n='$n' api version");
}

$t->stop();

done_testing();
