#!/usr/bin/perl

# PUT, GET and HEAD of manifests: the four media types, by tag and by
# digest, Content-Type parameters, non-distributable layers, the served
# media type as the top-level scan finds it, and the validation errors.

use strict;
use warnings;

use Test::More;
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_I = 'application/vnd.oci.image.index.v1+json';
my $DOCKER_M = 'application/vnd.docker.distribution.manifest.v2+json';
my $DOCKER_L = 'application/vnd.docker.distribution.manifest.list.v2+json';

my $t = RegTest->new();

my $json = JSON::PP->new->utf8->canonical;

my $config = '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}';
my $layer = "layer bytes\n" x 50;
my $layer2 = "second layer";

my $cd = $t->push_blob('img', $config);
my $ld = $t->push_blob('img', $layer);
my $ld2 = $t->push_blob('img', $layer2);

sub desc {
    my ($type, $digest, $size, %extra) = @_;
    return { mediaType => $type, digest => $digest, size => $size, %extra };
}

sub oci_manifest {
    my (%o) = @_;
    return {
        schemaVersion => 2,
        mediaType => $OCI_M,
        config => desc('application/vnd.oci.image.config.v1+json', $cd,
                       length $config),
        layers => [
            desc('application/vnd.oci.image.layer.v1.tar+gzip', $ld, length $layer),
            desc('application/vnd.oci.image.layer.v1.tar+gzip', $ld2,
                 length $layer2),
        ],
        %o,
    };
}

sub check_error { RegTest::check_error(@_) }

sub check_get {
    my ($name, $ref, $bytes, $type, $what) = @_;
    my $d = RegTest::digest($bytes);

    my $r = $t->req('GET', "/v2/$name/manifests/$ref", headers => {
        Accept => "$OCI_M, $OCI_I, $DOCKER_M, $DOCKER_L" });
    is($r->{status}, 200, "$what get");
    ok($r->{content} eq $bytes, "$what get exact bytes");
    is($r->{headers}{'content-type'}, $type, "$what get content-type");
    is($r->{headers}{'content-length'}, length $bytes, "$what get content-length");
    is($r->{headers}{'docker-content-digest'}, $d, "$what get digest");
    is($r->{headers}{'etag'}, qq{"$d"}, "$what get etag");
    is($r->{headers}{'docker-distribution-api-version'}, $API,
       "$what get api version");

    $r = $t->req('HEAD', "/v2/$name/manifests/$ref", headers => {
        Accept => "$OCI_M, $OCI_I, $DOCKER_M, $DOCKER_L" });
    is($r->{status}, 200, "$what head");
    is($r->{content}, '', "$what head no body");
    is($r->{headers}{'content-type'}, $type, "$what head content-type");
    is($r->{headers}{'content-length'}, length $bytes, "$what head content-length");
    is($r->{headers}{'docker-content-digest'}, $d, "$what head digest");
}

# OCI image manifest by tag; odd formatting must be kept byte for byte

my $oci = JSON::PP->new->utf8->canonical->pretty->indent_length(3)
          ->encode(oci_manifest(annotations => { 'org.example' => "caf\x{e9}" }));
$oci =~ s/\n/\r\n/g;
my $oci_d = RegTest::digest($oci);

my $r = $t->push_manifest('img', 'v1', $oci, $OCI_M);
is($r->{status}, 201, 'oci manifest put');
is($r->{headers}{'location'}, "/v2/img/manifests/$oci_d", 'oci manifest location');
is($r->{headers}{'docker-content-digest'}, $oci_d, 'oci manifest digest');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'oci manifest api version');

check_get('img', 'v1', $oci, $OCI_M, 'oci by tag');
check_get('img', $oci_d, $oci, $OCI_M, 'oci by digest');

# Docker image manifest

my $docker = $json->encode({
    schemaVersion => 2,
    mediaType => $DOCKER_M,
    config => desc('application/vnd.docker.container.image.v1+json', $cd,
                   length $config),
    layers => [ desc('application/vnd.docker.image.rootfs.diff.tar.gzip', $ld,
                     length $layer) ],
});
my $docker_d = RegTest::digest($docker);

$r = $t->push_manifest('img', 'docker', $docker, $DOCKER_M);
is($r->{status}, 201, 'docker manifest put');
is($r->{headers}{'docker-content-digest'}, $docker_d, 'docker manifest digest');
check_get('img', 'docker', $docker, $DOCKER_M, 'docker by tag');

# OCI index over both

my $index = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_I,
    manifests => [
        desc($OCI_M, $oci_d, length $oci,
             platform => { architecture => 'amd64', os => 'linux' }),
        desc($DOCKER_M, $docker_d, length $docker,
             platform => { architecture => 'arm64', os => 'linux' }),
    ],
});
my $index_d = RegTest::digest($index);

$r = $t->push_manifest('img', 'index', $index, $OCI_I);
is($r->{status}, 201, 'oci index put');
is($r->{headers}{'docker-content-digest'}, $index_d, 'oci index digest');
is($r->{headers}{'location'}, "/v2/img/manifests/$index_d", 'oci index location');
check_get('img', 'index', $index, $OCI_I, 'oci index by tag');

# Docker manifest list

my $list = $json->encode({
    schemaVersion => 2,
    mediaType => $DOCKER_L,
    manifests => [
        desc($DOCKER_M, $docker_d, length $docker,
             platform => { architecture => 'amd64', os => 'linux' }),
    ],
});

$r = $t->push_manifest('img', 'list', $list, $DOCKER_L);
is($r->{status}, 201, 'docker list put');
is($r->{headers}{'docker-content-digest'}, RegTest::digest($list),
   'docker list digest');
check_get('img', 'list', $list, $DOCKER_L, 'docker list by tag');

# PUT by digest

my $bydigest = $json->encode(oci_manifest(annotations => { n => 'by digest' }));
my $bydigest_d = RegTest::digest($bydigest);

$r = $t->push_manifest('img', $bydigest_d, $bydigest, $OCI_M);
is($r->{status}, 201, 'put by digest');
is($r->{headers}{'location'}, "/v2/img/manifests/$bydigest_d", 'put by digest location');
is($r->{headers}{'docker-content-digest'}, $bydigest_d, 'put by digest digest');
check_get('img', $bydigest_d, $bydigest, $OCI_M, 'put by digest');

# the same manifest again, and under another tag

$r = $t->push_manifest('img', 'v1', $oci, $OCI_M);
is($r->{status}, 201, 'put same manifest again');
$r = $t->push_manifest('img', 'v1-copy', $oci, $OCI_M);
is($r->{status}, 201, 'put same manifest under another tag');
check_get('img', 'v1-copy', $oci, $OCI_M, 'second tag');

# moving a tag

$r = $t->push_manifest('img', 'moving', $oci, $OCI_M);
$r = $t->push_manifest('img', 'moving', $docker, $DOCKER_M);
is($r->{status}, 201, 'move tag');
check_get('img', 'moving', $docker, $DOCKER_M, 'moved tag');
check_get('img', 'v1', $oci, $OCI_M, 'other tag unchanged');

# OCI manifest without the optional mediaType field

my $nomt = $json->encode({
    schemaVersion => 2,
    config => desc('application/vnd.oci.image.config.v1+json', $cd, length $config),
    layers => [],
});
$r = $t->push_manifest('img', 'nomediatype', $nomt, $OCI_M);
is($r->{status}, 201, 'oci manifest without mediaType');
check_get('img', 'nomediatype', $nomt, $OCI_M, 'oci manifest without mediaType');

# OCI 1.1 artifact: empty config, artifactType, subject, any layer type

my $empty_d = $t->push_blob('img', '{}');
my $artifact = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_M,
    artifactType => 'application/vnd.example.sbom+json',
    config => desc('application/vnd.oci.empty.v1+json', $empty_d, 2, data => 'e30='),
    layers => [ desc('application/vnd.example.sbom+json', $ld2, length $layer2) ],
    subject => desc($OCI_M, $oci_d, length $oci),
    annotations => { 'org.opencontainers.image.created' => '2024-01-01T00:00:00Z' },
});
$r = $t->push_manifest('img', RegTest::digest($artifact), $artifact, $OCI_M);
is($r->{status}, 201, 'artifact manifest put');
check_get('img', RegTest::digest($artifact), $artifact, $OCI_M, 'artifact manifest');

# indexes: empty, nested, with an artifact

my $empty_index = $json->encode({ schemaVersion => 2, mediaType => $OCI_I,
                                  manifests => [] });
$r = $t->push_manifest('img', 'empty-index', $empty_index, $OCI_I);
is($r->{status}, 201, 'empty index put');
check_get('img', 'empty-index', $empty_index, $OCI_I, 'empty index');

my $nested = $json->encode({
    schemaVersion => 2,
    mediaType => $OCI_I,
    manifests => [ desc($OCI_I, $index_d, length $index),
                   desc($OCI_M, RegTest::digest($artifact), length $artifact,
                        artifactType => 'application/vnd.example.sbom+json') ],
});
$r = $t->push_manifest('img', 'nested', $nested, $OCI_I);
is($r->{status}, 201, 'nested index put');
check_get('img', 'nested', $nested, $OCI_I, 'nested index');

###############################################################################
# Content-Type with parameters on PUT: ignored (the spec's SHOULD); served
# without them

{
    my $n = 0;
    for my $c ([$OCI_M, "$OCI_M; charset=utf-8", 'oci'],
               [$OCI_M, "$OCI_M;charset=utf-8", 'oci, no space'],
               [$OCI_M, "$OCI_M ; charset=\"utf-8\"; x=\"a;b\"",
                'oci, quoted parameters'],
               [$DOCKER_M, "$DOCKER_M; charset=utf-8", 'docker'],
               [$OCI_I, "$OCI_I; charset=utf-8", 'oci index'],
               [$DOCKER_L, "$DOCKER_L; charset=utf-8", 'docker list'])
    {
        my ($type, $ct, $what) = @$c;
        my $m = $type eq $OCI_I || $type eq $DOCKER_L
            ? { schemaVersion => 2, mediaType => $type,
                manifests => [ desc($type eq $OCI_I ? $OCI_M : $DOCKER_M,
                                    $type eq $OCI_I ? $oci_d : $docker_d,
                                    length($type eq $OCI_I ? $oci : $docker)) ],
                annotations => { n => "params $what" } }
            : $type eq $DOCKER_M
            ? { %{ decode_json($docker) }, annotations => { n => "params $what" } }
            : oci_manifest(annotations => { n => "params $what" });
        my $bytes = $json->encode($m);
        my $tag = 'params-' . ++$n;

        $r = $t->push_manifest('img', $tag, $bytes, $ct);
        is($r->{status}, 201, "content-type with parameters, $what: put")
            or diag($r->{content});
        is($r->{headers}{'docker-content-digest'}, RegTest::digest($bytes),
           "content-type with parameters, $what: digest");
        check_get('img', $tag, $bytes, $type,
                  "content-type with parameters, $what:");
    }

    # no mediaType field: the type comes from the header, parameters dropped

    my $bytes = $json->encode({
        schemaVersion => 2,
        config => desc('application/vnd.oci.image.config.v1+json', $cd,
                       length $config),
        layers => [],
        annotations => { n => 'params, no mediaType' },
    });
    $r = $t->push_manifest('img', 'params-nomt', $bytes,
                           "$OCI_M; charset=utf-8");
    is($r->{status}, 201,
       'content-type with parameters, no mediaType field: put');
    check_get('img', 'params-nomt', $bytes, $OCI_M,
              'content-type with parameters, no mediaType field:');

    # parameters do not hide a type that disagrees with mediaType

    $r = $t->push_manifest('img', 'bad', $oci, "$DOCKER_M; charset=utf-8");
    check_error($r, 400, 'MANIFEST_INVALID',
                'content-type with parameters, other type:');

    # RFC 9110: OWS before ";" may be a tab, too
    my $tb = $json->encode(oci_manifest(annotations => { n => 'tab' }));
    $r = $t->push_manifest('img', 'params-tab', $tb,
                           "$OCI_M\t; charset=utf-8");
    is($r->{status}, 201, 'content-type with a tab before parameters: put');
}

###############################################################################
# non-distributable (foreign) layers are never pushed: their blobs need not
# exist.  Every other reference still must.

{
    my $never = RegTest::digest('a foreign layer nobody pushed');
    my $never_size = 123456;

    for my $c ([$OCI_M, 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'],
               [$OCI_M, 'application/vnd.oci.image.layer.nondistributable.v1.tar'],
               [$OCI_M, 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'],
               [$DOCKER_M, 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'])
    {
        my ($type, $lt) = @$c;
        my $docker_image = $type eq $DOCKER_M;
        my $ordinary = $docker_image
            ? 'application/vnd.docker.image.rootfs.diff.tar.gzip'
            : 'application/vnd.oci.image.layer.v1.tar+gzip';
        my $mk = sub {
            my ($foreign_type) = @_;
            return $json->encode({
                schemaVersion => 2,
                mediaType => $type,
                config => desc($docker_image
                               ? 'application/vnd.docker.container.image.v1+json'
                               : 'application/vnd.oci.image.config.v1+json',
                               $cd, length $config),
                layers => [
                    desc($foreign_type, $never, $never_size,
                         urls => ['https://example.com/base-layer.tar.gz']),
                    desc($ordinary, $ld, length $layer),
                ],
            });
        };
        my $bytes = $mk->($lt);
        (my $what = $lt) =~ s{^application/vnd\.}{};
        my $tag = 'foreign-' . RegTest::digest($lt) =~ s/^sha256://r;
        $tag = substr($tag, 0, 20);

        $r = $t->push_manifest('img', $tag, $bytes, $type);
        is($r->{status}, 201, "missing $what layer: put") or diag($r->{content});
        check_get('img', $tag, $bytes, $type, "missing $what layer:");
        check_error($t->req('GET', "/v2/img/blobs/$never"), 404, 'BLOB_UNKNOWN',
                    "missing $what layer: the layer itself is not served");

        # the same manifest with the ordinary layer type: refused

        $r = $t->push_manifest('img', 'bad', $mk->($ordinary), $type);
        check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN',
                    "missing layer as $ordinary, not $what:");
    }

    # a config is never exempt, whatever its mediaType says

    $r = $t->push_manifest('img', 'bad', $json->encode(oci_manifest(
            config => desc('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
                           $never, $never_size))), $OCI_M);
    check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN',
                'missing config with a non-distributable type:');

    is($t->req('GET', '/v2/img/manifests/bad')->{status}, 404,
       'no manifest with a missing ordinary blob was tagged');
}

###############################################################################
# the served media type is found by a scan of the top-level keys: nested
# descriptors carry a mediaType too, strings hold quotes, braces and
# backslashes, and keys may have any whitespace around them

{
    my $j = JSON::PP->new->utf8->canonical->allow_nonref;
    my $pretty = JSON::PP->new->utf8->canonical->pretty;

    my $cfg = $j->encode(desc('application/vnd.oci.image.config.v1+json', $cd,
                              length $config));
    my $lyr = $j->encode([ desc('application/vnd.oci.image.layer.v1.tar+gzip',
                                $ld, length $layer) ]);
    my $dcfg = $j->encode(desc('application/vnd.docker.container.image.v1+json',
                               $cd, length $config));
    my $dlyr = $j->encode([ desc('application/vnd.docker.image.rootfs.diff.tar.gzip',
                                 $ld, length $layer) ]);
    my $children = $j->encode([
        desc($OCI_M, $oci_d, length $oci,
             platform => { architecture => 'amd64', os => 'linux' },
             annotations => { q => "\"}]", mediaType => $DOCKER_L }),
        desc($DOCKER_M, $docker_d, length $docker),
    ]);

    # annotations whose strings would end a naive scan early or late: an
    # escaped quote before braces, an escaped backslash before an escaped
    # quote, a string ending in a backslash, and a fake top-level
    # "mediaType" inside a string
    my $tricky = '{"x":"a\\"}{b","y":"[\\\\\\"]","z":"end\\\\",'
                 . '"w":"}]},\\"mediaType\\":\\"' . $DOCKER_M . '\\",{[",'
                 . '"mediaType":"' . $DOCKER_L . '"}';
    my $dt = decode_json($tricky);
    die "tricky annotations: not the strings meant\n"
        unless $dt->{x} eq 'a"}{b' && $dt->{y} eq '[\\"]' && $dt->{z} eq 'end\\'
               && $dt->{w} eq "}]},\"mediaType\":\"$DOCKER_M\",{[";

    my @cases = (
        ['annotations with escaped quotes and braces before mediaType',
         qq({"schemaVersion":2,"annotations":$tricky,"config":$cfg,)
         . qq("layers":$lyr,"mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['whitespace, newlines and tabs around keys',
         qq(\n\t {\r\n\t"schemaVersion" :\t2 ,\n  "config"\n:\n)
         . $pretty->encode(decode_json($cfg))
         . qq( ,\t"layers" : [ \n\t) . $j->encode(decode_json($lyr)->[0])
         . qq( \n] \r\n,\n\t"annotations"\t:\t$tricky\n,)
         . qq(\n\t"mediaType"\t:\t"$OCI_M"\r\n}\n\t ),
         $OCI_M, $OCI_M],

        ['mediaType keys nested in config, layers and annotations first',
         qq({"config":$cfg,"layers":$lyr,)
         . qq("annotations":{"mediaType":"$DOCKER_M"},"schemaVersion":2,)
         . qq("mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['docker manifest, mediaType last',
         qq({"schemaVersion":2,"config":$dcfg,"layers":$dlyr,)
         . qq("annotations":$tricky,"mediaType":"$DOCKER_M"}),
         $DOCKER_M, $DOCKER_M],

        ['index, mediaType after the children',
         qq({"schemaVersion":2,"manifests":$children,"annotations":$tricky,)
         . qq("mediaType":"$OCI_I"}),
         $OCI_I, $OCI_I],

        ['look-alike keys before mediaType',
         qq({"mediaTypes":"$DOCKER_M","xmediaType":"$DOCKER_M",)
         . qq("MediaType":"$DOCKER_M","mediatype":"$DOCKER_M",)
         . qq("media":"$DOCKER_M","schemaVersion":2,"config":$cfg,)
         . qq("layers":$lyr,"mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['scalars, empty and deep values before mediaType',
         qq({"schemaVersion":2,"x-num":-1.5e+3,"x-true":true,"x-false":false,)
         . qq("x-null":null,"x-obj":{},"x-arr":[],)
         . qq("x-deep":[[{"a":[{}],"b":"]]}}"}],"\\\\"],)
         . qq("config":$cfg,"layers":$lyr,"mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['mediaType value with an escaped slash',
         qq({"schemaVersion":2,"config":$cfg,"layers":$lyr,)
         . qq("mediaType":"application\\/vnd.oci.image.manifest.v1+json"}),
         $OCI_M, $OCI_M],

        # a scan that counted braces inside strings would end the
        # annotations early and take their mediaType for the top-level one
        ['braces in nested strings, then a nested mediaType',
         qq({"schemaVersion":2,"config":$cfg,"layers":$lyr,)
         . qq("x-nested":{"a":{"b":"}"},"mediaType":"$DOCKER_M","c":"{"},)
         . qq("mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        # a scan blind to escapes would end the string at \" and the object
        # at the brace after it, before the last mediaType
        ['two top-level mediaType keys, an escaped quote and a brace between',
         qq({"mediaType":"$DOCKER_M","x":"a\\"}","schemaVersion":2,)
         . qq("config":$cfg,"layers":$lyr,"mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['two top-level mediaType keys, the last wins',
         qq({"mediaType":"$DOCKER_M","schemaVersion":2,"config":$cfg,)
         . qq("layers":$lyr,"mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['the mediaType key spelled with an escape, alone',
         qq({"schemaVersion":2,"config":$cfg,"layers":$lyr,)
         . qq("\\u006dediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['the mediaType key with an escape first, then plain',
         qq({"schemaVersion":2,"\\u006dediaType":"$DOCKER_M",)
         . qq("config":$cfg,"layers":$lyr,"mediaType":"$OCI_M"}),
         $OCI_M, $OCI_M],

        ['oci manifest without top-level mediaType, nested ones only',
         qq({"schemaVersion":2,"annotations":$tricky,"config":$cfg,)
         . qq("layers":$lyr}),
         $OCI_M, $OCI_M],

        ['oci manifest without mediaType, pushed as application/json',
         qq({"schemaVersion":2,"config":$cfg,"layers":$lyr,)
         . qq("annotations":{"n":"as json"}}),
         'application/json', $OCI_M],

        ['index without top-level mediaType',
         qq({"schemaVersion":2,"manifests":$children}),
         $OCI_I, $OCI_I],

        ['index without mediaType, pushed as application/json',
         qq({"schemaVersion":2,"annotations":$tricky,"manifests":$children}),
         'application/json', $OCI_I],
    );

    my $n = 0;

    for my $c (@cases) {
        my ($what, $bytes, $ct, $served) = @$c;
        die "$what: not JSON\n" unless eval { decode_json($bytes); 1 };
        my $tag = 'scan-' . ++$n;

        $r = $t->push_manifest('img', $tag, $bytes, $ct);
        is($r->{status}, 201, "scan: $what: put") or diag($r->{content});
        check_get('img', $tag, $bytes, $served, "scan: $what:");
    }

    # a "mediaType" key spelled with an escape is the same key to a JSON
    # parser (the push is checked with one): the last one still wins
    my $bytes = qq({"schemaVersion":2,"mediaType":"$DOCKER_M",)
                . qq("config":$cfg,"layers":$lyr,)
                . qq("\\u006dediaType":"$OCI_M"});
    $r = $t->push_manifest('img', 'scan-escaped-key', $bytes, $OCI_M);
    is($r->{status}, 201,
       'scan: an escaped "mediaType" key last: put');

    is($t->req('GET', '/v2/img/manifests/scan-escaped-key')
           ->{headers}{'content-type'}, $OCI_M,
       'scan: an escaped "mediaType" key last: served as the parser reads it');
}

# errors: digest mismatch

$r = $t->push_manifest('img', $oci_d, $docker, $DOCKER_M);
check_error($r, 400, 'DIGEST_INVALID', 'put by wrong digest');
$r = $t->req('GET', "/v2/img/manifests/" . RegTest::digest($docker . ''));
is($r->{status}, 200, 'docker manifest untouched');

my $never = RegTest::digest('never');
$r = $t->push_manifest('img', $never, $bydigest, $OCI_M);
check_error($r, 400, 'DIGEST_INVALID', 'put by unrelated digest');
is($t->req('GET', "/v2/img/manifests/$never")->{status}, 404,
   'put by unrelated digest stored nothing');

# errors: not a manifest

for my $c (['not json', 'not json at all'],
           ['truncated json', substr($docker, 0, -1)],
           ['json array', '[1,2,3]'],
           ['json string', '"manifest"'],
           ['json null', 'null'],
           ['empty body', ''],
           ['no schemaVersion',
            $json->encode({ %{ decode_json($docker) }, schemaVersion => undef })],
           ['schemaVersion 3',
            $json->encode({ %{ decode_json($docker) }, schemaVersion => 3 })],
           ['schemaVersion string',
            $json->encode({ %{ decode_json($docker) }, schemaVersion => '2' })],
           ['config not an object',
            $json->encode({ %{ decode_json($docker) }, config => 'x' })],
           ['config without digest',
            $json->encode({ %{ decode_json($docker) },
                            config => { mediaType => 'application/vnd.docker.container.image.v1+json',
                                        size => 1 } })],
           ['config with a bad digest',
            $json->encode({ %{ decode_json($docker) },
                            config => desc('application/vnd.docker.container.image.v1+json',
                                           'sha256:abc', 1) })],
           ['layers not an array',
            $json->encode({ %{ decode_json($docker) }, layers => {} })],
           ['layer with a bad digest',
            $json->encode({ %{ decode_json($docker) },
                            layers => [ desc('application/vnd.docker.image.rootfs.diff.tar.gzip',
                                             'md5:d41d8cd98f00b204e9800998ecf8427e', 1) ] })],
           ['layer size not a number',
            $json->encode({ %{ decode_json($docker) },
                            layers => [ desc('application/vnd.docker.image.rootfs.diff.tar.gzip',
                                             $ld, 'big') ] })],
           ['no config',
            do { my $m = decode_json($docker); delete $m->{config}; $json->encode($m) }])
{
    my ($what, $body) = @$c;
    $r = $t->push_manifest('img', 'bad', $body, $DOCKER_M);
    check_error($r, 400, 'MANIFEST_INVALID', $what);
}

# errors: media types

$r = $t->push_manifest('img', 'bad', $oci, $DOCKER_M);
check_error($r, 400, 'MANIFEST_INVALID', 'mediaType oci, content-type docker');

$r = $t->push_manifest('img', 'bad', $docker, $OCI_M);
check_error($r, 400, 'MANIFEST_INVALID', 'mediaType docker, content-type oci');

$r = $t->push_manifest('img', 'bad', $index, $OCI_M);
check_error($r, 400, 'MANIFEST_INVALID', 'index sent as manifest');

$r = $t->push_manifest('img', 'bad', $oci, $OCI_I);
check_error($r, 400, 'MANIFEST_INVALID', 'manifest sent as index');

my $weird = $json->encode({ %{ decode_json($docker) },
                            mediaType => 'application/x-weird+json' });
$r = $t->push_manifest('img', 'bad', $weird, 'application/x-weird+json');
check_error($r, 400, 'MANIFEST_INVALID', 'unknown media type');

# schema 1

my $schema1 = $json->encode({
    schemaVersion => 1,
    name => 'img',
    tag => 'bad',
    architecture => 'amd64',
    fsLayers => [ { blobSum => $ld } ],
    history => [ { v1Compatibility => '{}' } ],
});
for my $type ('application/vnd.docker.distribution.manifest.v1+prettyjws',
              'application/vnd.docker.distribution.manifest.v1+json',
              'application/json')
{
    $r = $t->push_manifest('img', 'bad', $schema1, $type);
    check_error($r, 400, 'MANIFEST_INVALID', "schema1 as $type");
}

is($t->req('GET', '/v2/img/manifests/bad')->{status}, 404,
   'no invalid manifest was tagged');

# errors: blobs not in the repository

my $missing = RegTest::digest('missing blob');

$r = $t->push_manifest('img', 'bad', $json->encode(oci_manifest(
        config => desc('application/vnd.oci.image.config.v1+json', $missing, 12))),
    $OCI_M);
check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN', 'missing config');

$r = $t->push_manifest('img', 'bad', $json->encode(oci_manifest(
        layers => [ desc('application/vnd.oci.image.layer.v1.tar+gzip', $ld, length $layer),
                    desc('application/vnd.oci.image.layer.v1.tar+gzip', $missing, 12) ])),
    $OCI_M);
check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN', 'missing layer');

my $elsewhere = $t->push_blob('elsewhere', 'only in another repository');
$r = $t->push_manifest('img', 'bad', $json->encode(oci_manifest(
        layers => [ desc('application/vnd.oci.image.layer.v1.tar+gzip', $elsewhere, 26) ])),
    $OCI_M);
check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN', 'layer only in another repository');

$r = $t->push_manifest('img', 'bad', $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_I,
        manifests => [ desc($OCI_M, $oci_d, length $oci),
                       desc($OCI_M, $missing, 100) ],
    }), $OCI_I);
check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN', 'index with a missing child');

$r = $t->push_manifest('img', 'bad', $json->encode({
        schemaVersion => 2,
        mediaType => $DOCKER_L,
        manifests => [ desc($DOCKER_M, $missing, 100) ],
    }), $DOCKER_L);
check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN', 'list with a missing child');

# a child manifest that exists only in another repository

$t->push_blob('other', $config);
$t->push_blob('other', $layer);
$r = $t->push_manifest('other', 'x', $docker, $DOCKER_M);
is($r->{status}, 201, 'manifest in another repository');

my $foreign = $json->encode(oci_manifest(annotations => { n => 'foreign' }));
$t->push_blob('other', $layer2);
$r = $t->push_manifest('other', 'foreign', $foreign, $OCI_M);
is($r->{status}, 201, 'second manifest in another repository');

$r = $t->push_manifest('img', 'bad', $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_I,
        manifests => [ desc($OCI_M, RegTest::digest($foreign), length $foreign) ],
    }), $OCI_I);
check_error($r, 400, 'MANIFEST_BLOB_UNKNOWN', 'index child only in another repository');

is($t->req('GET', '/v2/img/manifests/bad')->{status}, 404,
   'no manifest with missing blobs was tagged');

# unknown manifests

$r = $t->req('GET', '/v2/img/manifests/nosuchtag');
check_error($r, 404, 'MANIFEST_UNKNOWN', 'unknown tag');
$r = $t->req('GET', "/v2/img/manifests/$never");
check_error($r, 404, 'MANIFEST_UNKNOWN', 'unknown digest');
$r = $t->req('HEAD', '/v2/img/manifests/nosuchtag');
is($r->{status}, 404, 'head unknown tag');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'head unknown tag api version');
$r = $t->req('GET', "/v2/img/manifests/$ld");
check_error($r, 404, 'MANIFEST_UNKNOWN', 'a layer is not a manifest');
$r = $t->req('GET', "/v2/elsewhere/manifests/$oci_d");
check_error($r, 404, 'MANIFEST_UNKNOWN', 'manifest of another repository');
$r = $t->req('GET', '/v2/nosuchrepo/manifests/latest');
is($r->{status}, 404, 'unknown repository');

# size limit: 4 MiB by default

my $pad = ' ' x (5 * 1024 * 1024);
my $huge = $json->encode(oci_manifest());
$huge =~ s/^\{/{$pad/;

$r = $t->push_manifest('img', 'huge', $huge, $OCI_M);
check_error($r, 413, 'SIZE_INVALID', '5 MiB manifest');

my @parts = unpack '(a65536)*', $huge;
$r = $t->req('PUT', '/v2/img/manifests/huge',
             headers => { 'Content-Type' => $OCI_M },
             content => sub { shift @parts });
check_error($r, 413, 'SIZE_INVALID', '5 MiB manifest, chunked');

is($t->req('GET', '/v2/img/manifests/huge')->{status}, 404, 'huge manifest not stored');

my $large = $json->encode(oci_manifest());
$large =~ s/^\{/'{' . (' ' x (3 * 1024 * 1024))/e;
$r = $t->push_manifest('img', 'large', $large, $OCI_M);
is($r->{status}, 201, '3 MiB manifest');
check_get('img', 'large', $large, $OCI_M, '3 MiB manifest');

$t->stop();

# registry_manifest_max_size

$t = RegTest->new(location_extra => 'registry_manifest_max_size 2k;');

$cd = $t->push_blob('img', $config);
$ld = $t->push_blob('img', $layer);
$ld2 = $t->push_blob('img', $layer2);

my $small = $json->encode(oci_manifest());
$small =~ s/^\{/'{' . (' ' x (2048 - length $small))/e;
is(length $small, 2048, 'manifest of exactly 2k built');
$r = $t->push_manifest('img', 'small', $small, $OCI_M);
is($r->{status}, 201, 'manifest at the limit');

$r = $t->push_manifest('img', 'toobig', ' ' . $small, $OCI_M);
check_error($r, 413, 'SIZE_INVALID', 'manifest one byte over the limit');

$t->stop();

done_testing();
