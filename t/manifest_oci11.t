#!/usr/bin/perl

# Manifests, OCI 1.1 and compatibility details: PUT with ?tag= query
# parameters (OCI-Tag), schema1 manifests already in a store (served with
# a Warning, never accepted on push), registry_manifest_max_size, the
# stored type served whatever Accept says, sha512 manifest digests, and
# DELETE by tag.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha512_hex);
use File::Path qw(make_path);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_I = 'application/vnd.oci.image.index.v1+json';
my $DOCKER_M = 'application/vnd.docker.distribution.manifest.v2+json';
my $DOCKER_L = 'application/vnd.docker.distribution.manifest.list.v2+json';
my $S1_SIGNED = 'application/vnd.docker.distribution.manifest.v1+prettyjws';
my $S1 = 'application/vnd.docker.distribution.manifest.v1+json';

my $t = RegTest->new(delete => 1);
my $v2 = $t->root . '/docker/registry/v2';

my $json = JSON::PP->new->utf8->canonical;

sub check_error { RegTest::check_error(@_) }

sub hex_of { (split /:/, $_[0])[1] }

sub dec { my ($text) = @_; return eval { $json->decode($text) }; }

sub desc {
    my ($type, $digest, $size, %extra) = @_;
    return { mediaType => $type, digest => $digest, size => $size, %extra };
}

# all values of a response header (HTTP::Tiny: an array ref when repeated)
sub hdrs {
    my ($r, $name) = @_;
    my $v = $r->{headers}{lc $name};
    return () unless defined $v;
    return ref $v ? @$v : ($v);
}

sub data_path {
    my ($d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return "$v2/blobs/$alg/" . substr($hex, 0, 2) . "/$hex/data";
}

sub revision_link {
    my ($name, $d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return "$v2/repositories/$name/_manifests/revisions/$alg/$hex/link";
}

sub spew_path {
    my ($f, $data) = @_;
    (my $dir = $f) =~ s{/[^/]+$}{};
    make_path($dir);
    RegTest::spew($f, $data);
}

sub get_manifest {
    my ($name, $ref, $accept) = @_;
    return $t->req('GET', "/v2/$name/manifests/$ref",
                   $accept ? (headers => { Accept => $accept }) : ());
}

# an OCI image manifest over the blobs of repository $name, padded with an
# annotation to exactly size => N bytes; on => another RegTest instance
my %blobs;

sub oci_manifest {
    my ($name, %o) = @_;

    my $inst = $o{on} || $t;

    $blobs{$inst->port . $name} ||= do {
        my $config = '{"architecture":"amd64","os":"linux","rootfs":'
                     . '{"type":"layers","diff_ids":[]}}';
        my $layer = "layer of $name\n" x 20;
        {
            config => desc('application/vnd.oci.image.config.v1+json',
                           $inst->push_blob($name, $config), length $config),
            layer => desc('application/vnd.oci.image.layer.v1.tar+gzip',
                          $inst->push_blob($name, $layer), length $layer),
        };
    };

    my $m = {
        schemaVersion => 2,
        mediaType => $OCI_M,
        config => $blobs{$inst->port . $name}{config},
        layers => [ $blobs{$inst->port . $name}{layer} ],
        annotations => { 'org.example.id' => '' . ($o{id} // rand()),
                         pad => '' },
    };

    my $bytes = $json->encode($m);

    if ($o{size}) {
        $m->{annotations}{pad} = 'x' x ($o{size} - length $bytes);
        $bytes = $json->encode($m);
        die "size\n" unless length $bytes == $o{size};
    }

    return $bytes;
}

###############################################################################
# PUT with ?tag=

{
    my $m = oci_manifest('tq/app', id => 'three tags');
    my $d = RegTest::digest($m);

    my $r = $t->req('PUT', "/v2/tq/app/manifests/$d?tag=a&tag=b&tag=c",
                    headers => { 'Content-Type' => $OCI_M }, content => $m);
    is($r->{status}, 201, '?tag=a&tag=b&tag=c: 201');
    is($r->{headers}{'docker-content-digest'}, $d, '?tag=: digest');
    is($r->{headers}{location}, "/v2/tq/app/manifests/$d", '?tag=: Location');
    is_deeply([ sort(hdrs($r, 'OCI-Tag')) ], [qw(a b c)],
              '?tag=: one OCI-Tag header per tag');

    for my $tag (qw(a b c)) {
        my $g = get_manifest('tq/app', $tag, $OCI_M);
        ok($g->{status} == 200 && $g->{content} eq $m,
           "?tag=: tag $tag serves the manifest");
        is($g->{headers}{'docker-content-digest'}, $d, "?tag=: tag $tag digest");
        is(RegTest::slurp("$v2/repositories/tq/app/_manifests/tags/$tag/current/link"),
           $d, "?tag=: tag $tag current link");
    }

    my $tl = dec($t->req('GET', '/v2/tq/app/tags/list')->{content}) || {};
    is_deeply([ sort @{ $tl->{tags} || [] } ], [qw(a b c)], '?tag=: tags/list');

    # twelve query tags in one PUT (the spec: at least 10 SHOULD work)

    {
        my @twelve = ('latest', 'v1', 'v1.2', 'v1.2.3', '1.2.3-rc.1', 'stable',
                      'Release_2024', 'x' x 128, '_under', 'a-b.c_d', 'UPPER',
                      'z9');
        my $m12 = oci_manifest('tq/twelve', id => 'twelve tags');
        my $d12 = RegTest::digest($m12);
        my $q = join '&', map { "tag=$_" } @twelve;

        my $r12 = $t->req('PUT', "/v2/tq/twelve/manifests/$d12?$q",
                          headers => { 'Content-Type' => $OCI_M },
                          content => $m12);
        is($r12->{status}, 201, '12 query tags: 201');
        is($r12->{headers}{'docker-content-digest'}, $d12,
           '12 query tags: digest');
        my @got = hdrs($r12, 'OCI-Tag');
        is(scalar @got, 12, '12 query tags: 12 OCI-Tag headers');
        is_deeply([ sort @got ], [ sort @twelve ],
                  '12 query tags: one OCI-Tag header per tag');

        my @bad;
        for my $tag (@twelve) {
            my $g = get_manifest('tq/twelve', $tag, $OCI_M);
            push @bad, $tag unless $g->{status} == 200 && $g->{content} eq $m12
                && ($g->{headers}{'docker-content-digest'} // '') eq $d12;
        }
        is("@bad", '', '12 query tags: every tag resolves to the manifest');

        my $tl12 = dec($t->req('GET', '/v2/tq/twelve/tags/list')->{content})
                   || {};
        is_deeply($tl12->{tags}, [ sort @twelve ], '12 query tags: tags/list');
    }

    # PUT by tag plus query tags

    my $m2 = oci_manifest('tq/app', id => 'path and query');
    my $d2 = RegTest::digest($m2);
    $r = $t->req('PUT', '/v2/tq/app/manifests/main?tag=x&tag=y',
                 headers => { 'Content-Type' => $OCI_M }, content => $m2);
    is($r->{status}, 201, 'PUT by tag with ?tag=: 201');
    my %oci_tag = map { $_ => 1 } hdrs($r, 'OCI-Tag');
    ok($oci_tag{x} && $oci_tag{y}, 'PUT by tag with ?tag=: OCI-Tag for x and y')
        or diag(explain([ hdrs($r, 'OCI-Tag') ]));

    for my $tag (qw(main x y)) {
        my $g = get_manifest('tq/app', $tag, $OCI_M);
        ok($g->{status} == 200 && $g->{content} eq $m2,
           "PUT by tag with ?tag=: $tag serves the manifest");
    }

    # a manifest pushed without ?tag= gets no OCI-Tag

    $r = $t->push_manifest('tq/app', 'plain', oci_manifest('tq/app'), $OCI_M);
    is($r->{status}, 201, 'plain PUT');
    ok(!exists $r->{headers}{'oci-tag'}, 'plain PUT: no OCI-Tag');

    # an invalid tag anywhere in the query: nothing stored

    for my $bad ('-bad', 'x' x 129, 'a%2Fb', '.dot') {
        my $mb = oci_manifest('tq/app', id => "invalid $bad");
        my $db = RegTest::digest($mb);
        $r = $t->req('PUT', "/v2/tq/app/manifests/$db?tag=okay&tag=$bad&tag=fine",
                     headers => { 'Content-Type' => $OCI_M }, content => $mb);
        my $what = 'invalid tag ' . substr($bad, 0, 10);
        check_error($r, 400, 'TAG_INVALID', $what);
        ok(!-e revision_link('tq/app', $db), "$what: no revision");
        ok(!-e data_path($db), "$what: no blob");
        ok(!-e "$v2/repositories/tq/app/_manifests/tags/okay"
           && !-e "$v2/repositories/tq/app/_manifests/tags/fine",
           "$what: no valid tag of the query stored either");
        is(get_manifest('tq/app', $db, $OCI_M)->{status}, 404,
           "$what: GET by digest 404");
    }

    # by tag, an invalid query tag: the path tag is not stored either

    my $mb = oci_manifest('tq/app', id => 'invalid with path tag');
    $r = $t->req('PUT', '/v2/tq/app/manifests/pathtag?tag=-bad',
                 headers => { 'Content-Type' => $OCI_M }, content => $mb);
    check_error($r, 400, 'TAG_INVALID', 'PUT by tag, invalid query tag');
    is(get_manifest('tq/app', 'pathtag', $OCI_M)->{status}, 404,
       'PUT by tag, invalid query tag: path tag not stored');
    ok(!-e revision_link('tq/app', RegTest::digest($mb)),
       'PUT by tag, invalid query tag: no revision');

    # at most 32 distinct query tags in one PUT

    {
        my @tags32 = map { "t$_" } 1 .. 32;
        my $m32 = oci_manifest('tq/max', id => '32 tags');
        my $d32 = RegTest::digest($m32);
        my $r32 = $t->req('PUT', "/v2/tq/max/manifests/$d32?"
                                 . join('&', map { "tag=$_" } @tags32),
                          headers => { 'Content-Type' => $OCI_M },
                          content => $m32);
        is($r32->{status}, 201, '32 query tags: 201');
        my @got = hdrs($r32, 'OCI-Tag');
        is(scalar @got, 32, '32 query tags: 32 OCI-Tag headers');
        is_deeply([ sort @got ], [ sort @tags32 ],
                  '32 query tags: one OCI-Tag header per tag');
        my @bad = grep {
            my $g = get_manifest('tq/max', $_, $OCI_M);
            !($g->{status} == 200 && $g->{content} eq $m32)
        } @tags32;
        is("@bad", '', '32 query tags: every tag resolves to the manifest');

        my @tags33 = map { "u$_" } 1 .. 33;
        my $m33 = oci_manifest('tq/max', id => '33 tags');
        my $d33 = RegTest::digest($m33);
        my $r33 = $t->req('PUT', "/v2/tq/max/manifests/$d33?"
                                 . join('&', map { "tag=$_" } @tags33),
                          headers => { 'Content-Type' => $OCI_M },
                          content => $m33);
        check_error($r33, 400, 'TAG_INVALID', '33 query tags');
        my $e = dec($r33->{content}) || {};
        my $err = ref $e->{errors} eq 'ARRAY' ? $e->{errors}[0] || {} : {};
        like(join(' ', grep { defined && !ref } @$err{qw(message detail)}),
             qr/\b32\b/, '33 query tags: the error says at most 32');
        ok(!exists $r33->{headers}{'oci-tag'}, '33 query tags: no OCI-Tag');
        @bad = grep { get_manifest('tq/max', $_, $OCI_M)->{status} != 404 }
               @tags33;
        is("@bad", '', '33 query tags: none of the tags resolves');
        ok(!grep({ -e "$v2/repositories/tq/max/_manifests/tags/$_" } @tags33),
           '33 query tags: no tag directory');
        is(get_manifest('tq/max', $d33, $OCI_M)->{status}, 404,
           '33 query tags: the manifest digest is unknown');
        ok(!-e revision_link('tq/max', $d33), '33 query tags: no revision');
        ok(!-e data_path($d33), '33 query tags: no blob');

        # 33 arguments but 32 distinct tags are 32 tags
        my $m32d = oci_manifest('tq/max', id => '32 distinct of 33');
        my $r32d = $t->req('PUT', "/v2/tq/max/manifests/"
                                  . RegTest::digest($m32d) . '?'
                                  . join('&', map { "tag=v$_" } 1 .. 32, 1),
                           headers => { 'Content-Type' => $OCI_M },
                           content => $m32d);
        is($r32d->{status}, 201, '33 query tags, 32 distinct: 201');
        is(scalar(my @h = hdrs($r32d, 'OCI-Tag')), 32,
           '33 query tags, 32 distinct: 32 OCI-Tag headers');
    }

    # a tag given twice: one OCI-Tag header for it

    {
        my $md = oci_manifest('tq/dup', id => 'duplicate tags');
        my $dd = RegTest::digest($md);
        my $rd = $t->req('PUT', "/v2/tq/dup/manifests/$dd?tag=a&tag=a&tag=b",
                         headers => { 'Content-Type' => $OCI_M },
                         content => $md);
        is($rd->{status}, 201, '?tag=a&tag=a&tag=b: 201');
        is_deeply([ sort(hdrs($rd, 'OCI-Tag')) ], [qw(a b)],
                  '?tag=a&tag=a&tag=b: one OCI-Tag header per distinct tag');
        for my $tag (qw(a b)) {
            my $g = get_manifest('tq/dup', $tag, $OCI_M);
            ok($g->{status} == 200 && $g->{content} eq $md,
               "?tag=a&tag=a&tag=b: $tag serves the manifest");
        }
        my $tl = dec($t->req('GET', '/v2/tq/dup/tags/list')->{content}) || {};
        is_deeply($tl->{tags}, [qw(a b)], '?tag=a&tag=a&tag=b: tags/list');
    }

    # the limit is checked before the body is read: the answer comes
    # while the client still holds its 1000 bytes back

    {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port, Proto => 'tcp')
            or die "connect: $!\n";
        $s->autoflush(1);
        my $q = join '&', map { "tag=w$_" } 1 .. 33;
        print $s "PUT /v2/tq/early/manifests/early?$q HTTP/1.1\r\n"
                 . "Host: localhost\r\nContent-Type: $OCI_M\r\n"
                 . "Content-Length: 1000\r\n\r\n";
        my $reply = '';
        my $sel = IO::Select->new($s);
        my $t0 = time;
        while (time - $t0 < 4 && $sel->can_read(3)) {
            sysread($s, $reply, 65536, length $reply) or last;
            my ($head, $body) = split /\r\n\r\n/, $reply, 2;
            last if defined $body && $head =~ /^Content-Length:\s*(\d+)/mi
                    && length $body >= $1;
        }
        close $s;
        like($reply, qr{^HTTP/1\.1 400 },
             '33 query tags, no body sent: 400 at once');
        like($reply, qr/\r\n\r\n.*TAG_INVALID/s,
             '33 query tags, no body sent: TAG_INVALID');
        is(get_manifest('tq/early', 'early', $OCI_M)->{status}, 404,
           '33 query tags, no body sent: nothing stored');
    }
}

###############################################################################
# schema1 in the store, written by hand as distribution 2.x did

my $layer1 = "schema1 layer bytes\n" x 10;
my $layer1_d = RegTest::digest($layer1);

my $signed = <<"EOF";
{
   "schemaVersion": 1,
   "name": "old/app",
   "tag": "legacy",
   "architecture": "amd64",
   "fsLayers": [
      {
         "blobSum": "$layer1_d"
      }
   ],
   "history": [
      {
         "v1Compatibility": "{\\"id\\":\\"2f1bdd9a9f6e0c1b7e9d0b5bbbc4a1c0a0c6f1e5d9b1f5d8c8e4a7b3c2d1e0f9\\",\\"created\\":\\"2016-03-01T18:00:00.000000000Z\\",\\"container_config\\":{\\"Cmd\\":[\\"/bin/sh\\"]},\\"os\\":\\"linux\\"}"
      }
   ],
   "signatures": [
      {
         "header": {
            "jwk": {
               "crv": "P-256",
               "kid": "AB3C:3DEF:4GHI:5JKL:6MNO:7PQR:8STU:9VWX:YZ01:2345:6789:ABCD",
               "kty": "EC",
               "x": "f0V9P0hH5Yp9mJQ0aJ2oJ1d9n0q2c6xE0Qe1aT3b4xM",
               "y": "a1X9nKk8Y3wq2m4b6s0Jp5Y7v1Q2d3e4f5g6h7i8j9k"
            },
            "alg": "ES256"
         },
         "signature": "l2cN4O3hF5nYkQ8mR7yB6sP0tA9vW1xZ2cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4aB5cD6eF7gH8iJ9kA",
         "protected": "eyJmb3JtYXRMZW5ndGgiOjY2MjgsImZvcm1hdFRhaWwiOiJDbjAiLCJ0aW1lIjoiMjAxNi0wMy0wMVQxODowMDowMFoifQ"
      }
   ]
}
EOF
chomp $signed;

my $unsigned = $json->encode({
    schemaVersion => 1,
    name => 'old/app',
    tag => 'unsigned',
    architecture => 'amd64',
    fsLayers => [ { blobSum => $layer1_d } ],
    history => [ { v1Compatibility => '{"id":"aa","os":"linux"}' } ],
});

sub store_by_hand {
    my ($name, $tag, $bytes) = @_;
    my $d = RegTest::digest($bytes);
    spew_path(data_path($d), $bytes);
    spew_path(revision_link($name, $d), $d);
    spew_path("$v2/repositories/$name/_manifests/tags/$tag/current/link", $d);
    spew_path("$v2/repositories/$name/_manifests/tags/$tag/index/sha256/"
              . hex_of($d) . '/link', $d);
    return $d;
}

spew_path(data_path($layer1_d), $layer1);
spew_path("$v2/repositories/old/app/_layers/sha256/" . hex_of($layer1_d)
          . '/link', $layer1_d);

my $signed_d = store_by_hand('old/app', 'legacy', $signed);
my $unsigned_d = store_by_hand('old/app', 'unsigned', $unsigned);

sub check_warning {
    my ($r, $what) = @_;
    my @w = hdrs($r, 'Warning');
    ok(@w >= 1, "$what: Warning header");
    is(scalar(grep { !/^299 - "[^"]+"$/ } @w), 0,
       "$what: Warning is 299 - \"text\"") or diag(explain(\@w));
    ok(length(join('', @w)) <= 4096, "$what: Warning bytes <= 4096");
    ok(scalar(grep { /schema1/i } @w), "$what: Warning names schema1");
}

for my $case ([ 'signed', 'legacy', $signed, $signed_d, $S1_SIGNED ],
              [ 'unsigned', 'unsigned', $unsigned, $unsigned_d, $S1 ])
{
    my ($what, $tag, $bytes, $d, $type) = @$case;

    for my $ref ($tag, $d) {
        for my $accept (undef, "$DOCKER_M, $OCI_M, $S1_SIGNED") {
            my $w = "schema1 $what GET " . ($ref eq $d ? 'by digest' : 'by tag')
                    . ($accept ? ' Accept list' : ' no Accept');

            my $r = get_manifest('old/app', $ref, $accept);
            is($r->{status}, 200, "$w: status");
            ok($r->{content} eq $bytes, "$w: exact bytes");
            is($r->{headers}{'content-type'}, $type, "$w: Content-Type");
            is($r->{headers}{'docker-content-digest'}, $d, "$w: digest");
            is($r->{headers}{'content-length'}, length $bytes,
               "$w: Content-Length");
            check_warning($r, $w);
        }
    }

    my $h = $t->req('HEAD', "/v2/old/app/manifests/$tag");
    my $w = "schema1 $what HEAD";
    is($h->{status}, 200, "$w: status");
    is($h->{content}, '', "$w: no body");
    is($h->{headers}{'content-type'}, $type, "$w: Content-Type");
    is($h->{headers}{'content-length'}, length $bytes, "$w: Content-Length");
    is($h->{headers}{'docker-content-digest'}, $d, "$w: digest");
    is($h->{headers}{etag}, qq{"$d"}, "$w: ETag");
    check_warning($h, $w);
}

# no Warning on a schema2 manifest

{
    my $r = get_manifest('tq/app', 'a', $OCI_M);
    is($r->{status}, 200, 'OCI manifest GET');
    ok(!exists $r->{headers}{warning}, 'OCI manifest: no Warning');
}

# pushing schema1 is refused

sub schema1_refused {
    my ($r, $bytes, $what) = @_;
    check_error($r, 400, 'MANIFEST_INVALID', $what);
    my $j = dec($r->{content}) || {};
    my $e = ($j->{errors} || [])->[0] || {};
    my $text = join(' ', grep { defined && !ref } $e->{message}, $e->{detail});
    like($text, qr/schema ?1/i, "$what: message or detail names schema1");
    ok(!-e revision_link('new/s1', RegTest::digest($bytes)), "$what: no revision");
    is(get_manifest('new/s1', 'v1')->{status}, 404, "$what: no tag");
}

{
    # the layer, so that only the schema is wrong
    $t->push_blob('new/s1', $layer1);

    schema1_refused($t->push_manifest('new/s1', 'v1', $signed, $S1_SIGNED),
                    $signed, 'push schema1 prettyjws');
    schema1_refused($t->push_manifest('new/s1', 'v1', $unsigned, $S1),
                    $unsigned, 'push schema1 v1+json');
    schema1_refused($t->push_manifest('new/s1', 'v1', $unsigned,
                                      'application/json'),
                    $unsigned, 'push schemaVersion 1 as application/json');

    # no Content-Type at all (HTTP::Tiny would add one)

    my $raw = $t->raw("PUT /v2/new/s1/manifests/v1 HTTP/1.1\r\n"
                      . "Host: localhost\r\nConnection: close\r\n"
                      . 'Content-Length: ' . length($unsigned) . "\r\n\r\n"
                      . $unsigned);
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.1 (\d+)};
    schema1_refused({ status => $status // 0, content => $body // '',
                      headers => { 'docker-distribution-api-version'
                                   => (($head // '') =~ /^Docker-Distribution-Api-Version:\s*(\S+)/mi)[0] } },
                    $unsigned, 'push schemaVersion 1 without Content-Type');
}

###############################################################################
# registry_manifest_max_size

{
    # default 4m: 5 MiB refused, with Content-Length and chunked

    my $big = oci_manifest('big/app', size => 5 * 1024 * 1024);
    my $bd = RegTest::digest($big);

    my $r = $t->push_manifest('big/app', 'v1', $big, $OCI_M);
    check_error($r, 413, 'SIZE_INVALID', '5 MiB manifest');
    ok(!-e data_path($bd), '5 MiB manifest: no blob');
    ok(!-e revision_link('big/app', $bd), '5 MiB manifest: no revision');
    is(get_manifest('big/app', 'v1', $OCI_M)->{status}, 404,
       '5 MiB manifest: no tag');

    my $sent = 0;
    $r = $t->req('PUT', '/v2/big/app/manifests/chunked',
                 headers => { 'Content-Type' => $OCI_M },
                 content => sub {
                     return undef if $sent >= length $big;
                     my $c = substr($big, $sent, 65536);
                     $sent += length $c;
                     return $c;
                 });
    check_error($r, 413, 'SIZE_INVALID', '5 MiB manifest, chunked');
    ok(!-e data_path($bd), '5 MiB manifest, chunked: no blob');
    ok(!-e revision_link('big/app', $bd), '5 MiB manifest, chunked: no revision');
    is(get_manifest('big/app', 'chunked', $OCI_M)->{status}, 404,
       '5 MiB manifest, chunked: no tag');

    # 4 MiB less a little is still taken

    my $ok = oci_manifest('big/app', size => 4 * 1024 * 1024 - 100);
    $r = $t->push_manifest('big/app', 'fits', $ok, $OCI_M);
    is($r->{status}, 201, 'manifest just under 4 MiB accepted');
}

{
    my $s = RegTest->new(location_extra => 'registry_manifest_max_size 8k;');

    my $m9 = oci_manifest('small/app', size => 9000, on => $s);
    my $r = $s->push_manifest('small/app', 'v1', $m9, $OCI_M);
    check_error($r, 413, 'SIZE_INVALID', '8k limit: 9000 bytes');
    ok(!-e $s->root . '/docker/registry/v2/blobs/sha256/'
           . substr(hex_of(RegTest::digest($m9)), 0, 2) . '/'
           . hex_of(RegTest::digest($m9)),
       '8k limit: 9000 bytes not stored');

    my $sent = 0;
    $r = $s->req('PUT', '/v2/small/app/manifests/chunked',
                 headers => { 'Content-Type' => $OCI_M },
                 content => sub {
                     return undef if $sent >= length $m9;
                     my $c = substr($m9, $sent, 1000);
                     $sent += length $c;
                     return $c;
                 });
    check_error($r, 413, 'SIZE_INVALID', '8k limit: 9000 bytes chunked');

    my $m4 = oci_manifest('small/app', size => 4000, on => $s);
    $r = $s->push_manifest('small/app', 'v2', $m4, $OCI_M);
    is($r->{status}, 201, '8k limit: 4000 bytes accepted');
    my $g = $s->req('GET', '/v2/small/app/manifests/v2',
                    headers => { Accept => $OCI_M });
    ok($g->{status} == 200 && $g->{content} eq $m4, '8k limit: 4000 bytes served');

    $s->stop;
}

###############################################################################
# the stored type whatever Accept says; HEAD = GET headers

{
    my $im = $t->push_image('neg/app', 'oci');
    my $dm = $t->push_image('neg/app', 'docker', type => 'docker');

    my $oi = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_I,
        manifests => [ desc($OCI_M, $im->{digest}, length $im->{manifest},
                            platform => { architecture => 'amd64',
                                          os => 'linux' }) ],
    });
    is($t->push_manifest('neg/app', 'ociindex', $oi, $OCI_I)->{status}, 201,
       'negotiation: OCI index pushed');

    my $dl = $json->encode({
        schemaVersion => 2,
        mediaType => $DOCKER_L,
        manifests => [ desc($DOCKER_M, $dm->{digest}, length $dm->{manifest},
                            platform => { architecture => 'amd64',
                                          os => 'linux' }) ],
    });
    is($t->push_manifest('neg/app', 'dockerlist', $dl, $DOCKER_L)->{status},
       201, 'negotiation: docker list pushed');

    my %other = ($OCI_M => $DOCKER_M, $DOCKER_M => $OCI_M,
                 $OCI_I => $DOCKER_L, $DOCKER_L => $OCI_I);

    for my $case ([ 'oci', $im->{manifest}, $OCI_M ],
                  [ 'docker', $dm->{manifest}, $DOCKER_M ],
                  [ 'ociindex', $oi, $OCI_I ],
                  [ 'dockerlist', $dl, $DOCKER_L ])
    {
        my ($tag, $bytes, $type) = @$case;
        my $d = RegTest::digest($bytes);

        for my $accept (undef, '*/*', $type, $other{$type},
                        'application/json', "$other{$type};q=1, $type;q=0.1")
        {
            my $w = "$tag with Accept " . ($accept // 'none');

            for my $ref ($tag, $d) {
                my $ww = $w . ($ref eq $d ? ' by digest' : ' by tag');
                my $g = get_manifest('neg/app', $ref, $accept);
                is($g->{status}, 200, "$ww: GET status");
                ok($g->{content} eq $bytes, "$ww: stored bytes");
                is($g->{headers}{'content-type'}, $type, "$ww: stored type");

                my $h = $t->req('HEAD', "/v2/neg/app/manifests/$ref",
                                $accept ? (headers => { Accept => $accept }) : ());
                is($h->{status}, 200, "$ww: HEAD status");
                is($h->{content}, '', "$ww: HEAD no body");
                is_deeply(
                    { map { $_ => $h->{headers}{$_} }
                      qw(content-type content-length docker-content-digest etag) },
                    { 'content-type' => $type,
                      'content-length' => length $bytes,
                      'docker-content-digest' => $d,
                      etag => qq{"$d"} },
                    "$ww: HEAD headers");
                is_deeply(
                    { map { $_ => $g->{headers}{$_} }
                      qw(content-type content-length docker-content-digest etag) },
                    { map { $_ => $h->{headers}{$_} }
                      qw(content-type content-length docker-content-digest etag) },
                    "$ww: HEAD headers = GET headers");
            }
        }
    }
}

###############################################################################
# sha512

{
    my $m = oci_manifest('s512/app', id => 'sha512');
    my $hex = sha512_hex($m);
    my $d = "sha512:$hex";

    my $r = $t->req('PUT', "/v2/s512/app/manifests/$d",
                    headers => { 'Content-Type' => $OCI_M }, content => $m);
    is($r->{status}, 201, 'sha512: PUT by digest');
    is($r->{headers}{'docker-content-digest'}, $d, 'sha512: Docker-Content-Digest');
    is($r->{headers}{location}, "/v2/s512/app/manifests/$d", 'sha512: Location');

    my $g = get_manifest('s512/app', $d, $OCI_M);
    is($g->{status}, 200, 'sha512: GET by digest');
    ok($g->{content} eq $m, 'sha512: exact bytes');
    is($g->{headers}{'docker-content-digest'}, $d, 'sha512: GET digest');
    is($g->{headers}{etag}, qq{"$d"}, 'sha512: ETag');

    my $h = $t->req('HEAD', "/v2/s512/app/manifests/$d");
    is($h->{status}, 200, 'sha512: HEAD');
    is($h->{headers}{'content-length'}, length $m, 'sha512: HEAD Content-Length');

    is(RegTest::slurp(revision_link('s512/app', $d)), $d,
       'sha512: revisions/sha512/<hex>/link');
    is(RegTest::slurp(data_path($d)), $m, 'sha512: blobs/sha512/<2>/<hex>/data');
    ok(!-e revision_link('s512/app', RegTest::digest($m)),
       'sha512: no sha256 revision');

    is(get_manifest('s512/app', RegTest::digest($m), $OCI_M)->{status}, 404,
       'sha512: not reachable by its sha256');

    # with ?tag=: the tag points at the sha512 digest

    my $m2 = oci_manifest('s512/app', id => 'sha512 tagged');
    my $d2 = 'sha512:' . sha512_hex($m2);
    $r = $t->req('PUT', "/v2/s512/app/manifests/$d2?tag=t512",
                 headers => { 'Content-Type' => $OCI_M }, content => $m2);
    is($r->{status}, 201, 'sha512 with ?tag=: 201');
    $g = get_manifest('s512/app', 't512', $OCI_M);
    ok($g->{status} == 200 && $g->{content} eq $m2, 'sha512 with ?tag=: tag serves it');
    is($g->{headers}{'docker-content-digest'}, $d2, 'sha512 with ?tag=: digest');

    # a wrong sha512

    my $m3 = oci_manifest('s512/app', id => 'wrong');
    my $wrong = 'sha512:' . sha512_hex($m3 . ' ');
    $r = $t->req('PUT', "/v2/s512/app/manifests/$wrong",
                 headers => { 'Content-Type' => $OCI_M }, content => $m3);
    check_error($r, 400, 'DIGEST_INVALID', 'sha512 mismatch');
    ok(!-e revision_link('s512/app', $wrong), 'sha512 mismatch: no revision');
    ok(!-e data_path('sha512:' . sha512_hex($m3)), 'sha512 mismatch: no blob');

    # malformed sha512 digests

    check_error($t->req('PUT', '/v2/s512/app/manifests/sha512:' . substr($hex, 0, 64),
                        headers => { 'Content-Type' => $OCI_M }, content => $m),
                400, 'DIGEST_INVALID', 'sha512 with 64 hex digits');
}

###############################################################################
# DELETE by tag

{
    my $img = $t->push_image('dt/app', 'one');
    is($t->push_manifest('dt/app', 'two', $img->{manifest}, $img->{type})->{status},
       201, 'delete tag: second tag on the same manifest');

    my $r = $t->req('DELETE', '/v2/dt/app/manifests/one');
    is($r->{status}, 202, 'DELETE by tag: 202');

    check_error(get_manifest('dt/app', 'one', $OCI_M), 404, 'MANIFEST_UNKNOWN',
                'deleted tag');
    my $g = get_manifest('dt/app', $img->{digest}, $OCI_M);
    ok($g->{status} == 200 && $g->{content} eq $img->{manifest},
       'deleted tag: manifest still served by digest');
    $g = get_manifest('dt/app', 'two', $OCI_M);
    ok($g->{status} == 200 && $g->{content} eq $img->{manifest},
       'deleted tag: the other tag intact');
    ok(-f revision_link('dt/app', $img->{digest}), 'deleted tag: revision kept');

    my $tl = dec($t->req('GET', '/v2/dt/app/tags/list')->{content}) || {};
    is_deeply($tl->{tags}, ['two'], 'deleted tag: tags/list');

    check_error($t->req('DELETE', '/v2/dt/app/manifests/one'), 404,
                'MANIFEST_UNKNOWN', 'DELETE the deleted tag again');
}

$t->stop;

done_testing();
