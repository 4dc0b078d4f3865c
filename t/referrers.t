#!/usr/bin/perl

# The OCI 1.1 referrers API: GET|HEAD /v2/<name>/referrers/<digest>, the
# OCI-Subject header on manifest PUT, the artifactType filter, the on-disk
# index under _ngx_referrers/ and its rebuild from the manifests alone,
# an empty artifactType, a client's referrers tag schema fallback, a
# listing of 300 referrers, a referrer pushed through CNCF distribution on
# the same store, and a cosign-like signature pushed and listed with
# nothing but curl.

use strict;
use warnings;

use Test::More;
use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools run3 spew start_distribution
                stop_distribution);

need_tools(qw(curl docker-registry));

my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_I = 'application/vnd.oci.image.index.v1+json';
my $EMPTY = 'application/vnd.oci.empty.v1+json';
my $SBOM = 'application/vnd.example.sbom.v1';
my $SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json';

my $t = RegTest->new(delete => 1);
my $v2 = $t->root . '/docker/registry/v2';
my $tmp = tempdir('referrers-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $json = JSON::PP->new->utf8->canonical;

sub dec { my ($text) = @_; return eval { $json->decode($text) }; }

sub hex_of { (split /:/, $_[0])[1] }

sub desc {
    my ($type, $digest, $size, %extra) = @_;
    return { mediaType => $type, digest => $digest, size => $size, %extra };
}

# the entry the listing must hold for a referrer manifest
sub entry {
    my ($bytes, $type, $artifact_type, $annotations) = @_;
    my %e = (mediaType => $type, digest => RegTest::digest($bytes),
             size => length $bytes);
    $e{artifactType} = $artifact_type if defined $artifact_type;
    $e{annotations} = $annotations if $annotations;
    return \%e;
}

sub index_of {
    my (@entries) = @_;
    return {
        schemaVersion => 2,
        mediaType => $OCI_I,
        manifests => [ sort { $a->{digest} cmp $b->{digest} } @entries ],
    };
}

sub referrers_path {
    my ($name, $digest, $query) = @_;
    return "/v2/$name/referrers/$digest" . ($query // '');
}

# GET the listing, compare it with the expected entries; returns the
# response.  filtered => 1: an artifactType filter was asked for.
sub check_listing {
    my ($name, $digest, $query, $entries, $what, %o) = @_;

    my $r = $t->req('GET', referrers_path($name, $digest, $query));

    is($r->{status}, 200, "$what: status");
    is($r->{headers}{'content-type'}, $OCI_I, "$what: Content-Type");
    is_deeply(dec($r->{content}), index_of(@$entries),
              "$what: listing")
        or diag($r->{content});

    if ($o{filtered}) {
        is($r->{headers}{'oci-filters-applied'}, 'artifactType',
           "$what: OCI-Filters-Applied");
    } else {
        ok(!exists $r->{headers}{'oci-filters-applied'},
           "$what: no OCI-Filters-Applied without a filter");
    }

    return $r;
}

sub put_manifest {
    my ($name, $ref, $m, $type) = @_;
    my $bytes = ref $m ? $json->encode($m) : $m;
    my $r = $t->push_manifest($name, $ref, $bytes, $type || $OCI_M);
    return ($r, $bytes);
}

###############################################################################
# the subject image and blobs for the artifacts

my $img = $t->push_image('ref/app', 'v1');
my $subject = desc($img->{type}, $img->{digest}, length $img->{manifest});

my $other = $t->push_image('ref/app', 'other');
my $other_subject = desc($other->{type}, $other->{digest},
                         length $other->{manifest});

my $child = $t->push_image('ref/app', 'child');

my $empty_d = $t->push_blob('ref/app', '{}');
my $sbom_bytes = '{"spdxVersion":"SPDX-2.3","name":"app"}';
my $sbom_d = $t->push_blob('ref/app', $sbom_bytes);
my $cfg_bytes = '{"tool":"example","version":3}';
my $cfg_d = $t->push_blob('ref/app', $cfg_bytes);

my @app;        # the expected referrers of $img in ref/app

# 1. artifactType set, empty config, no annotations

my ($r, $sbom) = put_manifest('ref/app', 'sbom-1', {
    schemaVersion => 2,
    mediaType => $OCI_M,
    artifactType => $SBOM,
    config => desc($EMPTY, $empty_d, 2),
    layers => [ desc('application/spdx+json', $sbom_d, length $sbom_bytes) ],
    subject => $subject,
});
is($r->{status}, 201, 'artifact with artifactType: PUT');
is($r->{headers}{'oci-subject'}, $img->{digest},
   'artifact with artifactType: OCI-Subject');
push @app, entry($sbom, $OCI_M, $SBOM);

# 2. no artifactType: the config's mediaType stands for it

my $cfg_type = 'application/vnd.example.config.v1+json';
my $m2 = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_M,
    config => desc($cfg_type, $cfg_d, length $cfg_bytes),
    layers => [ desc('application/vnd.example.data', $sbom_d,
                     length $sbom_bytes) ],
    subject => $subject,
});
$r = $t->push_manifest('ref/app', RegTest::digest($m2), $m2, $OCI_M);
is($r->{status}, 201, 'artifact without artifactType: PUT by digest');
is($r->{headers}{'oci-subject'}, $img->{digest},
   'artifact without artifactType: OCI-Subject');
push @app, entry($m2, $OCI_M, $cfg_type);

# 3. an index with a subject and no artifactType: no artifactType in the
# entry

my $m3 = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_I,
    manifests => [ desc($child->{type}, $child->{digest},
                        length $child->{manifest},
                        platform => { architecture => 'arm64', os => 'linux' }) ],
    subject => $subject,
});
$r = $t->push_manifest('ref/app', RegTest::digest($m3), $m3, $OCI_I);
is($r->{status}, 201, 'index referrer: PUT');
is($r->{headers}{'oci-subject'}, $img->{digest}, 'index referrer: OCI-Subject');
push @app, entry($m3, $OCI_I, undef);

# 4. annotations, same artifactType as 1

my $ann = { 'org.opencontainers.image.created' => '2024-05-01T10:00:00Z',
            'org.example.note' => "caf\x{e9} \"quoted\"" };
my $m4 = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_M,
    artifactType => $SBOM,
    config => desc($EMPTY, $empty_d, 2),
    layers => [ desc('application/spdx+json', $sbom_d, length $sbom_bytes) ],
    subject => $subject,
    annotations => $ann,
});
$r = $t->push_manifest('ref/app', RegTest::digest($m4), $m4, $OCI_M);
is($r->{status}, 201, 'artifact with annotations: PUT');
push @app, entry($m4, $OCI_M, $SBOM, $ann);

# 5. an index with artifactType and annotations

my $ann5 = { 'org.example.kind' => 'attestations' };
my $m5 = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_I,
    artifactType => 'application/vnd.example.attestations',
    manifests => [ desc($child->{type}, $child->{digest},
                        length $child->{manifest}) ],
    subject => $subject,
    annotations => $ann5,
});
$r = $t->push_manifest('ref/app', RegTest::digest($m5), $m5, $OCI_I);
is($r->{status}, 201, 'index with artifactType: PUT');
push @app, entry($m5, $OCI_I, 'application/vnd.example.attestations', $ann5);

# 6. a referrer of the other image: listed there only

my $m6 = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_M,
    artifactType => $SBOM,
    config => desc($EMPTY, $empty_d, 2),
    layers => [ desc('application/spdx+json', $sbom_d, length $sbom_bytes) ],
    subject => $other_subject,
});
$r = $t->push_manifest('ref/app', RegTest::digest($m6), $m6, $OCI_M);
is($r->{status}, 201, 'referrer of another image: PUT');
is($r->{headers}{'oci-subject'}, $other->{digest},
   'referrer of another image: OCI-Subject names that image');

# no subject, no OCI-Subject (the images above were pushed without one)

ok(!exists $img->{response}{headers}{'oci-subject'},
   'image manifest without subject: no OCI-Subject');
(my $plain = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_M,
    artifactType => $SBOM,
    config => desc($EMPTY, $empty_d, 2),
    layers => [ desc('application/spdx+json', $sbom_d, length $sbom_bytes) ],
}));
$r = $t->push_manifest('ref/app', 'plain', $plain, $OCI_M);
is($r->{status}, 201, 'artifact without subject: PUT');
ok(!exists $r->{headers}{'oci-subject'}, 'artifact without subject: no OCI-Subject');

###############################################################################
# listings

my $full = check_listing('ref/app', $img->{digest}, undef, \@app, 'all referrers');

{
    my $j = dec($full->{content}) || {};
    my @d = map { $_->{digest} } @{ $j->{manifests} || [] };
    ok(@d > 1 && join(' ', @d) eq join(' ', sort @d),
       'entries ordered by digest');
    is(scalar @d, 5, 'five referrers, the one without subject not among them');
    my ($idx) = grep { $_->{digest} eq RegTest::digest($m3) }
                @{ $j->{manifests} || [] };
    ok($idx && !exists $idx->{artifactType},
       'index without artifactType: no artifactType key');
    ok($idx && !exists $idx->{annotations}, 'no annotations key when none');
}

check_listing('ref/app', $other->{digest}, undef,
              [ entry($m6, $OCI_M, $SBOM) ], 'referrers of the other image');

check_listing('ref/app', $img->{digest}, "?artifactType=$SBOM",
              [ grep { ($_->{artifactType} // '') eq $SBOM } @app ],
              'filter matching two', filtered => 1);

check_listing('ref/app', $img->{digest},
              '?artifactType=application%2Fvnd.example.attestations',
              [ grep { ($_->{artifactType} // '') eq
                       'application/vnd.example.attestations' } @app ],
              'filter percent-encoded', filtered => 1);

check_listing('ref/app', $img->{digest},
              '?artifactType=application/vnd.example.nothing',
              [], 'filter matching nothing', filtered => 1);

# HEAD

{
    my $h = $t->req('HEAD', referrers_path('ref/app', $img->{digest}));
    is($h->{status}, 200, 'HEAD: status');
    is($h->{headers}{'content-type'}, $OCI_I, 'HEAD: same Content-Type');
    is($h->{content}, '', 'HEAD: no body');
    is($h->{headers}{'content-length'},
       $full->{status} == 200 ? length $full->{content} : 'GET failed',
       'HEAD: Content-Length of the GET body');
}

# unknown subject, unknown repository, bad digest, bad name

check_listing('ref/app', RegTest::digest('no such manifest'), undef, [],
              'unknown subject');
check_listing('ref/nothere', $img->{digest}, undef, [], 'unknown repository');

RegTest::check_error($t->req('GET', '/v2/ref/app/referrers/sha256:1234'),
                     400, 'DIGEST_INVALID', 'short digest');
RegTest::check_error($t->req('GET', '/v2/ref/app/referrers/sha256:'
                                    . ('Z' x 64)),
                     400, 'DIGEST_INVALID', 'digest not hex');
RegTest::check_error($t->req('GET', '/v2/ref/app/referrers/notadigest'),
                     400, 'DIGEST_INVALID', 'not a digest');
RegTest::check_error($t->req('GET', "/v2/Ref/App/referrers/$img->{digest}"),
                     400, 'NAME_INVALID', 'invalid name');

###############################################################################
# the on-disk index

my $refdir = "$v2/repositories/ref/app/_ngx_referrers";
ok(-f "$refdir/sha256/" . hex_of($img->{digest}) . '/sha256-'
      . hex_of(RegTest::digest($sbom)),
   'index file _ngx_referrers/sha256/<subject>/sha256-<referrer>');
ok(-f "$refdir/built", '_ngx_referrers/built');

# a referrer in another repository is not listed here, and the same subject
# in another repository has its own referrers

my $imgb = $t->push_image('ref/b', 'v1',
                          layers => ['layer b']);
{
    my $e = $t->push_blob('ref/b', '{}');
    my $l = $t->push_blob('ref/b', $sbom_bytes);
    my $mb = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_M,
        artifactType => $SBOM,
        config => desc($EMPTY, $e, 2),
        layers => [ desc('application/spdx+json', $l, length $sbom_bytes) ],
        subject => $subject,        # ref/app's image, absent from ref/b
        annotations => { repo => 'b' },
    });
    $r = $t->push_manifest('ref/b', RegTest::digest($mb), $mb, $OCI_M);
    is($r->{status}, 201, 'repo B: referrer of a subject B does not hold');

    check_listing('ref/b', $img->{digest}, undef,
                  [ entry($mb, $OCI_M, $SBOM, { repo => 'b' }) ],
                  'repo B lists only its own referrer');
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'repo A does not list repo B\'s referrer');
    check_listing('ref/b', $imgb->{digest}, undef, [],
                  'repo B: its own image has no referrers');
}

# a subject that does not exist yet

my $later = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_M,
    config => desc('application/vnd.oci.image.config.v1+json', $cfg_d,
                   length $cfg_bytes),
    layers => [],
    annotations => { 'org.example.pushed' => 'later' },
});
my $later_d = RegTest::digest($later);
my $early;
{
    my $m = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_M,
        artifactType => $SIG,
        config => desc($EMPTY, $empty_d, 2),
        layers => [ desc('application/vnd.example.sig', $sbom_d,
                         length $sbom_bytes) ],
        subject => desc($OCI_M, $later_d, length $later),
    });
    $early = entry($m, $OCI_M, $SIG);

    $r = $t->push_manifest('ref/app', RegTest::digest($m), $m, $OCI_M);
    is($r->{status}, 201, 'subject not pushed yet: referrer accepted');
    is($r->{headers}{'oci-subject'}, $later_d,
       'subject not pushed yet: OCI-Subject');
    is($t->req('GET', "/v2/ref/app/manifests/$later_d")->{status}, 404,
       'subject not pushed yet: it really is absent');

    check_listing('ref/app', $later_d, undef, [$early],
                  'referrer of a subject not pushed yet');

    $r = $t->push_manifest('ref/app', 'later', $later, $OCI_M);
    is($r->{status}, 201, 'subject pushed afterwards');
    check_listing('ref/app', $later_d, undef, [$early],
                  'referrer still listed once the subject exists');
}

# rebuild: without _ngx_referrers/ the listing is the same, byte for byte

{
    my $before = $t->req('GET', referrers_path('ref/app', $img->{digest}));
    my $before_later = $t->req('GET', referrers_path('ref/app', $later_d));

    remove_tree($refdir);
    ok(!-e $refdir, 'rebuild: _ngx_referrers removed by hand');

    my $after = check_listing('ref/app', $img->{digest}, undef, \@app,
                              'rebuild: listing');
    ok($before->{status} == 200 && $after->{status} == 200
       && $after->{content} eq $before->{content},
       'rebuild: identical bytes') or diag("$before->{content}\n$after->{content}");
    ok(-f "$refdir/built", 'rebuild: built written again');
    ok(-f "$refdir/sha256/" . hex_of($img->{digest}) . '/sha256-'
          . hex_of(RegTest::digest($m4)),
       'rebuild: entry files written again');

    my $al = $t->req('GET', referrers_path('ref/app', $later_d));
    ok($before_later->{status} == 200 && $al->{status} == 200
       && $al->{content} eq $before_later->{content},
       'rebuild: identical bytes for the other subject');
    check_listing('ref/app', $other->{digest}, undef,
                  [ entry($m6, $OCI_M, $SBOM) ],
                  'rebuild: referrers of the other image');
    check_listing('ref/app', $img->{digest}, "?artifactType=$SBOM",
                  [ grep { ($_->{artifactType} // '') eq $SBOM } @app ],
                  'rebuild: filter', filtered => 1);
}

# DELETE of a referrer

{
    $r = $t->req('DELETE', '/v2/ref/app/manifests/' . RegTest::digest($m2));
    is($r->{status}, 202, 'DELETE a referrer by digest');
    @app = grep { $_->{digest} ne RegTest::digest($m2) } @app;
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'deleted referrer gone from the listing');
}

# revisions removed by hand, as distribution's delete does: first only the
# link file (exactly what distribution's DELETE removes), then a whole
# revision directory

{
    my $revs = "$v2/repositories/ref/app/_manifests/revisions/sha256";

    ok(unlink("$revs/" . hex_of(RegTest::digest($m3)) . '/link'),
       'by hand: revision link of the index referrer removed');
    @app = grep { $_->{digest} ne RegTest::digest($m3) } @app;
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'by hand: referrer whose link is gone not listed');

    ok(remove_tree("$revs/" . hex_of(RegTest::digest($m5))),
       'by hand: revision directory of a referrer removed');
    @app = grep { $_->{digest} ne RegTest::digest($m5) } @app;
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'by hand: referrer whose revision is gone not listed');

    remove_tree($refdir);
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'by hand: same after a rebuild');
}

###############################################################################
# in a repository of their own (the tags of ref/app are counted below)

my $gimg = $t->push_image('ref/gaps', 'v1');
my $gsubject = desc($gimg->{type}, $gimg->{digest}, length $gimg->{manifest});
my $gempty_d = $t->push_blob('ref/gaps', '{}');
my $gcfg_d = $t->push_blob('ref/gaps', $cfg_bytes);
my $gdata_d = $t->push_blob('ref/gaps', $sbom_bytes);
my $gchild = $t->push_image('ref/gaps', 'child');

# an image manifest whose artifactType is the empty string: the entry takes
# the config's mediaType; an index whose artifactType is empty: no
# artifactType in the entry

my @gaps;
{
    my $me = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_M,
        artifactType => '',
        config => desc($cfg_type, $gcfg_d, length $cfg_bytes),
        layers => [ desc('application/vnd.example.data', $gdata_d,
                         length $sbom_bytes) ],
        subject => $gsubject,
        annotations => { kind => 'empty artifactType' },
    });
    $r = $t->push_manifest('ref/gaps', RegTest::digest($me), $me, $OCI_M);
    is($r->{status}, 201, 'empty artifactType: PUT');
    is($r->{headers}{'oci-subject'}, $gimg->{digest},
       'empty artifactType: OCI-Subject');
    push @gaps, entry($me, $OCI_M, $cfg_type,
                      { kind => 'empty artifactType' });

    my $ie = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_I,
        artifactType => '',
        manifests => [ desc($gchild->{type}, $gchild->{digest},
                            length $gchild->{manifest}) ],
        subject => $gsubject,
    });
    $r = $t->push_manifest('ref/gaps', RegTest::digest($ie), $ie, $OCI_I);
    is($r->{status}, 201, 'index with empty artifactType: PUT');
    push @gaps, entry($ie, $OCI_I, undef);

    my $l = check_listing('ref/gaps', $gimg->{digest}, undef, \@gaps,
                          'empty artifactType');
    my %by = map { $_->{digest} => $_ }
             @{ (dec($l->{content}) || {})->{manifests} || [] };
    is(($by{ RegTest::digest($me) } || {})->{artifactType}, $cfg_type,
       'empty artifactType: the entry has the config mediaType');
    ok($by{ RegTest::digest($ie) }
       && !exists $by{ RegTest::digest($ie) }{artifactType},
       'index with empty artifactType: no artifactType key');

    check_listing('ref/gaps', $gimg->{digest}, "?artifactType=$cfg_type",
                  [ $gaps[0] ], 'empty artifactType: filter by config type',
                  filtered => 1);
}

# the referrers tag schema, a client's fallback: an index pushed to the tag
# sha256-<hex of the subject> is a tag like any other

{
    my $tag = 'sha256-' . hex_of($gimg->{digest});
    is(length $tag, 71, 'referrers tag: 71 characters');

    # the client starts from an empty index (the tag is unknown) ...

    is($t->req('GET', "/v2/ref/gaps/manifests/$tag")->{status}, 404,
       'referrers tag: unknown at first');

    my $empty_idx = $json->encode({ schemaVersion => 2, mediaType => $OCI_I,
                                    manifests => [] });
    $r = $t->push_manifest('ref/gaps', $tag, $empty_idx, $OCI_I);
    is($r->{status}, 201, 'referrers tag: empty index PUT');

    # ... then adds the descriptors of the referrers it pushed

    my $listing = dec($t->req('GET', referrers_path('ref/gaps',
                                                    $gimg->{digest}))
                      ->{content}) || {};
    my $fallback = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_I,
        manifests => $listing->{manifests} || [],
    });
    $r = $t->push_manifest('ref/gaps', $tag, $fallback, $OCI_I);
    is($r->{status}, 201, 'referrers tag: index of the referrers PUT')
        or diag($r->{content});
    ok(!exists $r->{headers}{'oci-subject'},
       'referrers tag: the index has no subject, no OCI-Subject');

    my $g = $t->req('GET', "/v2/ref/gaps/manifests/$tag");
    is($g->{status}, 200, 'referrers tag: GET');
    ok($g->{content} eq $fallback, 'referrers tag: GET exact bytes');
    is($g->{headers}{'content-type'}, $OCI_I, 'referrers tag: GET Content-Type');
    is($g->{headers}{'docker-content-digest'}, RegTest::digest($fallback),
       'referrers tag: GET digest');
    is_deeply((dec($g->{content}) || {})->{manifests}, index_of(@gaps)->{manifests},
              'referrers tag: the index lists the referrers');

    my $h = $t->req('HEAD', "/v2/ref/gaps/manifests/$tag");
    is($h->{status}, 200, 'referrers tag: HEAD');
    is($h->{headers}{'docker-content-digest'}, RegTest::digest($fallback),
       'referrers tag: HEAD digest');

    my $tl = dec($t->req('GET', '/v2/ref/gaps/tags/list')->{content}) || {};
    ok(grep({ $_ eq $tag } @{ $tl->{tags} || [] }),
       'referrers tag: in tags/list');

    # the referrers API is unchanged by it

    check_listing('ref/gaps', $gimg->{digest}, undef, \@gaps,
                  'referrers tag: the API listing is unchanged');

    # a sha512 subject's tag: the encoded part cut to 64 characters

    my $t512 = 'sha512-' . substr(Digest::SHA::sha512_hex('a subject'), 0, 64);
    $r = $t->push_manifest('ref/gaps', $t512, $empty_idx, $OCI_I);
    is($r->{status}, 201, 'referrers tag of a sha512 subject: PUT');
    is($t->req('GET', "/v2/ref/gaps/manifests/$t512")->{content}, $empty_idx,
       'referrers tag of a sha512 subject: GET');
}

# 300 referrers of one subject: one response, every entry, by digest, and
# no Link (the module never paginates)

{
    my $subj = $t->push_image('ref/many', 'v1');
    my $sd = desc($subj->{type}, $subj->{digest}, length $subj->{manifest});
    my $e = $t->push_blob('ref/many', '{}');
    my $l = $t->push_blob('ref/many', $sbom_bytes);

    my (@many, @failed);

    for my $i (1 .. 300) {
        my $type = $i % 2 ? $SBOM : $SIG;
        my $m = $json->encode({
            schemaVersion => 2,
            mediaType => $OCI_M,
            artifactType => $type,
            config => desc($EMPTY, $e, 2),
            layers => [ desc('application/spdx+json', $l, length $sbom_bytes) ],
            subject => $sd,
            annotations => { n => "$i" },
        });
        my $res = $t->push_manifest('ref/many', RegTest::digest($m), $m, $OCI_M);
        push @failed, "$i:$res->{status}" unless $res->{status} == 201;
        push @many, entry($m, $OCI_M, $type, { n => "$i" });
    }

    is("@failed", '', '300 referrers: all pushed');

    my $res = check_listing('ref/many', $subj->{digest}, undef, \@many,
                            '300 referrers');
    my @d = map { $_->{digest} }
            @{ (dec($res->{content}) || {})->{manifests} || [] };
    is(scalar @d, 300, '300 referrers: 300 entries in one response');
    is(join(' ', @d), join(' ', sort map { $_->{digest} } @many),
       '300 referrers: sorted by digest');
    ok(!exists $res->{headers}{link}, '300 referrers: no Link');

    $res = check_listing('ref/many', $subj->{digest}, "?artifactType=$SIG",
                         [ grep { $_->{artifactType} eq $SIG } @many ],
                         '300 referrers: filter keeps 150', filtered => 1);
    ok(!exists $res->{headers}{link}, '300 referrers, filtered: no Link');

    $res = $t->req('GET', referrers_path('ref/many', $subj->{digest}));
    my $h = $t->req('HEAD', referrers_path('ref/many', $subj->{digest}));
    is($h->{headers}{'content-length'}, length $res->{content},
       '300 referrers: HEAD Content-Length of the whole listing');

    remove_tree("$v2/repositories/ref/many/_ngx_referrers");
    $res = check_listing('ref/many', $subj->{digest}, undef, \@many,
                         '300 referrers, rebuilt');
    ok(!exists $res->{headers}{link}, '300 referrers, rebuilt: no Link');
}

###############################################################################
# CNCF distribution on the same store

{
    my $dist = start_distribution($t->root);
    my $http = HTTP::Tiny->new(max_redirect => 0, timeout => 30,
                               keep_alive => 0);
    my $dreq = sub {
        my ($method, $path, %a) = @_;
        my %o;
        $o{headers} = $a{headers} if $a{headers};
        $o{content} = $a{content} if defined $a{content};
        my $res = $http->request($method, "$dist->{url}$path", \%o);
        $res->{content} //= '';
        return $res;
    };

    # _ngx_referrers does not disturb distribution

    my $tl = $dreq->('GET', '/v2/ref/app/tags/list');
    is($tl->{status}, 200, 'distribution: tags/list with _ngx_referrers');
    is_deeply([ sort @{ (dec($tl->{content}) || {})->{tags} || [] } ],
              [ qw(child later other plain sbom-1 v1) ],
              'distribution: same tags');
    is($dreq->('GET', "/v2/ref/app/manifests/$img->{digest}",
               headers => { Accept => $OCI_M })->{status}, 200,
       'distribution: serves the subject');

    # a layer pushed through distribution, then a manifest with a subject

    my $layer = "signature pushed through distribution\n";
    my $ld = RegTest::digest($layer);
    my $p = $dreq->('POST', '/v2/ref/app/blobs/uploads/');
    is($p->{status}, 202, 'distribution: upload started');
    my $loc = $p->{headers}{location} // '';
    $loc =~ s{^https?://[^/]+}{};
    my $sep = $loc =~ /\?/ ? '&' : '?';
    $p = $dreq->('PUT', "$loc${sep}digest=$ld",
                 headers => { 'Content-Type' => 'application/octet-stream' },
                 content => $layer);
    is($p->{status}, 201, 'distribution: layer pushed');

    my $dm = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_M,
        artifactType => $SIG,
        config => desc($EMPTY, $empty_d, 2),
        layers => [ desc('application/vnd.example.sig', $ld, length $layer) ],
        subject => $subject,
        annotations => { via => 'distribution' },
    });
    my $dmd = RegTest::digest($dm);

    # distribution 2.8.2 keeps the bytes as they are (unknown fields such
    # as subject and artifactType are ignored by its validation), so it
    # accepts the manifest; it does not answer OCI-Subject

    $p = $dreq->('PUT', "/v2/ref/app/manifests/$dmd",
                 headers => { 'Content-Type' => $OCI_M }, content => $dm);
    is($p->{status}, 201, 'distribution 2.8.2 accepts a manifest with subject')
        or diag($p->{content});
    is($p->{headers}{'docker-content-digest'}, $dmd, 'distribution: its digest');

    my @with = (@app, entry($dm, $OCI_M, $SIG, { via => 'distribution' }));
    check_listing('ref/app', $img->{digest}, undef, \@with,
                  'module lists the referrer pushed through distribution');
    check_listing('ref/app', $img->{digest},
                  '?artifactType=application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson',
                  [ entry($dm, $OCI_M, $SIG, { via => 'distribution' }) ],
                  'module filters it', filtered => 1);

    # distribution deletes it (removes the revision link): gone from the
    # module's listing

    $p = $dreq->('DELETE', "/v2/ref/app/manifests/$dmd");
    is($p->{status}, 202, 'distribution: DELETE the referrer');
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'module no longer lists what distribution deleted');

    # pushed again through distribution: its revision directory survived
    # the delete (only the link went), so revisions/sha256/ keeps its mtime;
    # the module must list it again all the same

    $p = $dreq->('PUT', "/v2/ref/app/manifests/$dmd",
                 headers => { 'Content-Type' => $OCI_M }, content => $dm);
    is($p->{status}, 201, 'distribution: the referrer pushed again');
    check_listing('ref/app', $img->{digest}, undef, \@with,
                  'module lists the referrer distribution pushed again');

    $p = $dreq->('DELETE', "/v2/ref/app/manifests/$dmd");
    is($p->{status}, 202, 'distribution: DELETE it again');
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'module no longer lists it');

    # the same, with a rebuild while its link is missing: the rebuilt index
    # cannot hold it, and the re-push through distribution only writes a
    # link into the directory that survived (no new entry in revisions/
    # sha256/, so that directory's mtime does not move)

    remove_tree($refdir);
    check_listing('ref/app', $img->{digest}, undef, \@app,
                  'rebuilt while the link is missing');
    $p = $dreq->('PUT', "/v2/ref/app/manifests/$dmd",
                 headers => { 'Content-Type' => $OCI_M }, content => $dm);
    is($p->{status}, 201, 'distribution: the referrer pushed a third time');
    check_listing('ref/app', $img->{digest}, undef, \@with,
                  'module lists it after a rebuild and a re-push');
    $p = $dreq->('DELETE', "/v2/ref/app/manifests/$dmd");
    is($p->{status}, 202, 'distribution: DELETE it a third time');

    # and distribution serves a referrer the module took

    my $g = $dreq->('GET', '/v2/ref/app/manifests/' . RegTest::digest($m4),
                    headers => { Accept => $OCI_M });
    ok($g->{status} == 200 && $g->{content} eq $m4,
       'distribution serves a referrer pushed to the module');

    stop_distribution($dist);
}

###############################################################################
# a cosign-like signature, pushed and listed with curl alone

sub curl {
    my (@args) = @_;
    my ($rc, $out, $err) = run3(['curl', '-sS', '-i', '-H', 'Expect:',
                                 @args], timeout => 30);
    my %res = (rc => $rc, err => $err, status => 0, headers => {},
               content => '');
    my ($head, $body) = split /\r\n\r\n/, $out, 2;
    my ($line, @lines) = split /\r\n/, $head // '';
    ($res{status}) = ($line // '') =~ m{^HTTP/\S+ (\d+)};
    $res{status} //= 0;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $k = lc $k;
        if (exists $res{headers}{$k}) {
            $res{headers}{$k} = [ ref $res{headers}{$k}
                                  ? @{ $res{headers}{$k} } : $res{headers}{$k},
                                  $v ];
        } else {
            $res{headers}{$k} = $v;
        }
    }
    $res{content} = $body // '';
    return \%res;
}

{
    my $base = $t->url('/v2/ref/signed');
    my $signed = $t->push_image('ref/signed', 'v1');

    # the empty config, monolithic POST

    spew("$tmp/empty.json", '{}');
    my $ed = RegTest::digest('{}');
    my $c = curl('-X', 'POST', '-H', 'Content-Type: application/octet-stream',
                 '--data-binary', "\@$tmp/empty.json",
                 "$base/blobs/uploads/?digest=$ed");
    is($c->{status}, 201, 'curl: empty config blob pushed') or diag($c->{err});

    # the signature payload: POST, PATCH, PUT as go-containerregistry does

    my $payload = $json->encode({
        critical => {
            identity => { 'docker-reference' => "127.0.0.1/ref/signed" },
            image => { 'docker-manifest-digest' => $signed->{digest} },
            type => 'cosign container image signature',
        },
        optional => undef,
    });
    spew("$tmp/payload.json", $payload);
    my $pd = RegTest::digest($payload);

    $c = curl('-X', 'POST', "$base/blobs/uploads/");
    is($c->{status}, 202, 'curl: signature upload started');
    my $loc = $c->{headers}{location} // '';
    $loc = $t->url($loc) if $loc =~ m{^/};
    $c = curl('-X', 'PATCH', '-H', 'Content-Type: application/octet-stream',
              '--data-binary', "\@$tmp/payload.json", $loc);
    is($c->{status}, 202, 'curl: signature PATCH');
    $loc = $c->{headers}{location} // $loc;
    $loc = $t->url($loc) if $loc =~ m{^/};
    my $sep = $loc =~ /\?/ ? '&' : '?';
    $c = curl('-X', 'PUT', "$loc${sep}digest=$pd");
    is($c->{status}, 201, 'curl: signature blob committed');

    my $sig_ann = {
        'dev.cosignproject.cosign/signature' =>
            'MEUCIQDx2hK1mR8mQ4C0i2w6L8+Yb5T5Q3X6r0Ow9Fv2u1aZcwIgQ0a7vZ1n2Q==',
    };
    my $sm = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_M,
        artifactType => $SIG,
        config => desc($EMPTY, $ed, 2),
        layers => [ desc('application/vnd.dev.cosign.simplesigning.v1+json',
                         $pd, length $payload, annotations => $sig_ann) ],
        subject => desc($signed->{type}, $signed->{digest},
                        length $signed->{manifest}),
        annotations => { 'org.opencontainers.image.created'
                             => '2024-05-01T10:00:00Z' },
    });
    my $smd = RegTest::digest($sm);
    spew("$tmp/sig-manifest.json", $sm);

    $c = curl('-X', 'PUT', '-H', "Content-Type: $OCI_M",
              '--data-binary', "\@$tmp/sig-manifest.json",
              "$base/manifests/$smd");
    is($c->{status}, 201, 'curl: signature manifest PUT') or diag($c->{content});
    is($c->{headers}{'oci-subject'}, $signed->{digest},
       'curl: OCI-Subject names the signed image');
    is($c->{headers}{'docker-content-digest'}, $smd, 'curl: manifest digest');

    my $want = index_of(entry($sm, $OCI_M, $SIG,
                              { 'org.opencontainers.image.created'
                                    => '2024-05-01T10:00:00Z' }));

    $c = curl("$base/referrers/$signed->{digest}");
    is($c->{status}, 200, 'curl: referrers GET');
    is($c->{headers}{'content-type'}, $OCI_I, 'curl: referrers Content-Type');
    is_deeply(dec($c->{content}), $want, 'curl: the signature is listed')
        or diag($c->{content});

    $c = curl("$base/referrers/$signed->{digest}"
              . '?artifactType=application%2Fvnd.dev.cosign.artifact.sig.v1%2Bjson');
    is($c->{status}, 200, 'curl: filtered referrers GET');
    is($c->{headers}{'oci-filters-applied'}, 'artifactType',
       'curl: OCI-Filters-Applied');
    is_deeply(dec($c->{content}), $want,
              'curl: the filter keeps the signature');

    # the signature itself can be fetched the way cosign verify does

    my $got = dec($c->{content}) || {};
    my $first = ($got->{manifests} || [])->[0] || {};
    $c = curl('-H', "Accept: $OCI_M", "$base/manifests/"
              . ($first->{digest} // 'sha256:none'));
    ok($c->{status} == 200 && $c->{content} eq $sm,
       'curl: the listed digest gives the signature manifest');
    $c = curl("$base/blobs/$pd");
    ok($c->{status} == 200 && $c->{content} eq $payload,
       'curl: and its payload blob');
}

$t->stop;

done_testing();
