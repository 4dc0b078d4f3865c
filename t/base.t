#!/usr/bin/perl

# Tests for the base route GET /v2/, the common headers and 405/404 answers.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $t = RegTest->new();

my $r = $t->req('GET', '/v2/');
is($r->{status}, 200, 'get base');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'get base api version');
like($r->{headers}{'content-type'}, qr{^application/json\b}, 'get base type');
is_deeply(eval { decode_json($r->{content}) }, {}, 'get base body');
is($r->{headers}{'content-length'}, length $r->{content}, 'get base length');

$r = $t->req('HEAD', '/v2/');
is($r->{status}, 200, 'head base');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'head base api version');
is($r->{content}, '', 'head base no body');

my $raw = $t->raw("GET /v2/ HTTP/1.0\r\nHost: localhost\r\n"
                  . "Connection: close\r\n\r\n");
like($raw, qr{^HTTP/1\.1 200 }, 'raw http/1.0 status');
like($raw, qr{\r\nDocker-Distribution-Api-Version: registry/2\.0\r\n}i,
     'raw http/1.0 api version');
like($raw, qr{\r\n\r\n\{\}\z}, 'raw http/1.0 body');

# methods not allowed on a route

for my $c (['POST', '/v2/'], ['PUT', '/v2/'], ['DELETE', '/v2/'],
           ['PATCH', '/v2/'],
           ['POST', '/v2/_catalog'], ['PUT', '/v2/_catalog'],
           ['DELETE', '/v2/_catalog'],
           ['POST', '/v2/foo/tags/list'], ['PUT', '/v2/foo/tags/list'],
           ['DELETE', '/v2/foo/tags/list'],
           ['POST', '/v2/foo/manifests/latest'],
           ['PATCH', '/v2/foo/manifests/latest'],
           ['POST', '/v2/foo/blobs/sha256:' . '0' x 64],
           ['PUT', '/v2/foo/blobs/sha256:' . '0' x 64],
           ['PATCH', '/v2/foo/blobs/sha256:' . '0' x 64],
           ['GET', '/v2/foo/blobs/uploads/'],
           ['DELETE', '/v2/foo/blobs/uploads/'])
{
    my ($m, $p) = @$c;
    $r = $t->req($m, $p, $m =~ /^(POST|PUT|PATCH)$/ ? (content => '') : ());
    is($r->{status}, 405, "$m $p 405");
    is(RegTest::error_code($r), 'UNSUPPORTED', "$m $p code");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$m $p api version");
}

# error body shape

$r = $t->req('DELETE', '/v2/');
like($r->{headers}{'content-type'}, qr{^application/json\b}, 'error type');
my $j = eval { decode_json($r->{content}) };
is(ref $j, 'HASH', 'error body is an object');
is(ref $j->{errors}, 'ARRAY', 'error body has errors array');
is(scalar @{ $j->{errors} || [] }, 1, 'one error');
ok(defined $j->{errors}[0]{message} && !ref $j->{errors}[0]{message},
   'error message is a string');

# unknown routes under /v2/: 404 with the NOT_FOUND code (distribution's
# code for a path that is no API route), also for DELETE; HEAD: no body

for my $p ('/v2/foo', '/v2/foo/bar', '/v2/foo/blobs', '/v2/foo/tags',
           '/v2/foo/whatever/x', '/v2/foo/bar/baz', '/v2/foo/manifests',
           '/v2/foo/blobs/uploads/x/y')
{
    $r = $t->req('GET', $p);
    is($r->{status}, 404, "GET $p 404");
    is(RegTest::error_code($r), 'NOT_FOUND', "GET $p code");
    like($r->{headers}{'content-type'} // '', qr{^application/json\b},
         "GET $p content-type");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "GET $p api version");
}

$r = $t->req('DELETE', '/v2/foo/bar/baz');
is($r->{status}, 404, 'DELETE /v2/foo/bar/baz 404');
is(RegTest::error_code($r), 'NOT_FOUND', 'DELETE /v2/foo/bar/baz code');

$r = $t->req('HEAD', '/v2/foo/bar/baz');
is($r->{status}, 404, 'HEAD /v2/foo/bar/baz 404');
is($r->{content}, '', 'HEAD /v2/foo/bar/baz no body');

$t->stop();

done_testing();
