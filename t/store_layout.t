#!/usr/bin/perl

# The files the module writes are those of CNCF distribution's filesystem
# driver, at the same paths with the same contents; and a store written by
# hand in that layout is served.

use strict;
use warnings;

use Test::More;
use File::Find;
use File::Path qw(make_path);
use JSON::PP;

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

my $t = RegTest->new(delete => 1);
my $v2 = $t->root . '/docker/registry/v2';

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    binmode $fh;
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($f, $data) = @_;
    (my $dir = $f) =~ s{/[^/]+$}{};
    make_path($dir);
    open my $fh, '>', $f or die "$f: $!";
    binmode $fh;
    print $fh $data;
    close $fh;
}

sub hex_of { (split /:/, $_[0])[1] }

sub data_path {
    my ($d) = @_;
    my ($alg, $hex) = split /:/, $d;
    return "$v2/blobs/$alg/" . substr($hex, 0, 2) . "/$hex/data";
}

# a blob

my $blob = "layer data\0\n" x 10;
my $d = $t->push_blob('lib/store', $blob);
my $hex = hex_of($d);

is(slurp(data_path($d)), $blob, 'blob data at blobs/sha256/<2>/<hex>/data');
is(slurp("$v2/repositories/lib/store/_layers/sha256/$hex/link"), $d,
   'layer link, exact content, no newline');

# an upload in progress

my $r = $t->req('POST', '/v2/lib/store/blobs/uploads/');
my $loc = $r->{headers}{location};
my $id = $r->{headers}{'docker-upload-uuid'};
my $up = "$v2/repositories/lib/store/_uploads/$id";

ok(-d $up, 'upload directory');
like(slurp("$up/startedat") // '',
     qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/,
     'startedat is an RFC 3339 time');

$t->req('PATCH', $loc, headers => { 'Content-Range' => '0-4' }, content => 'hello');
$t->req('PATCH', $loc, headers => { 'Content-Range' => '5-10' }, content => ' world');
is(slurp("$up/data"), 'hello world', 'upload data');
ok(-f "$up/ngx_registry_state", 'upload state file');

my $ud = RegTest::digest('hello world');
$r = $t->req('PUT', "$loc?digest=$ud");
is($r->{status}, 201, 'upload completed');
ok(!-e $up, 'upload directory removed after completion');
is(slurp(data_path($ud)), 'hello world', 'uploaded blob data');
is(slurp("$v2/repositories/lib/store/_layers/sha256/" . hex_of($ud) . '/link'), $ud,
   'uploaded blob link');

# a cancelled upload leaves nothing

$r = $t->req('POST', '/v2/lib/store/blobs/uploads/');
my $cancelled = "$v2/repositories/lib/store/_uploads/$r->{headers}{'docker-upload-uuid'}";
ok(-d $cancelled, 'second upload directory');
$t->req('PATCH', $r->{headers}{location}, content => 'to be cancelled');
$t->req('DELETE', $r->{headers}{location});
ok(!-e $cancelled, 'cancelled upload directory removed');

# a manifest by tag

my $img = $t->push_image('lib/store', 'v1');
my $mhex = hex_of($img->{digest});
my $tags = "$v2/repositories/lib/store/_manifests/tags";

is(slurp(data_path($img->{digest})), $img->{manifest}, 'manifest bytes are a blob');
is(slurp("$v2/repositories/lib/store/_manifests/revisions/sha256/$mhex/link"),
   $img->{digest}, 'revision link');
is(slurp("$tags/v1/current/link"), $img->{digest}, 'tag current link');
is(slurp("$tags/v1/index/sha256/$mhex/link"), $img->{digest}, 'tag index link');
is(slurp("$v2/repositories/lib/store/_layers/sha256/" . hex_of($img->{config}) . '/link'),
   $img->{config}, 'config layer link');
ok(!-e "$v2/repositories/lib/store/_layers/sha256/$mhex",
   'manifest not linked as a layer');

# moving the tag keeps the history

my $img2 = $t->push_image('lib/store', 'v2');
$r = $t->push_manifest('lib/store', 'v1', $img2->{manifest}, $img2->{type});
is($r->{status}, 201, 'tag moved');
is(slurp("$tags/v1/current/link"), $img2->{digest}, 'moved tag current link');
is(slurp("$tags/v1/index/sha256/$mhex/link"), $img->{digest}, 'old index link kept');
is(slurp("$tags/v1/index/sha256/" . hex_of($img2->{digest}) . '/link'),
   $img2->{digest}, 'new index link');

# a manifest by digest: a revision, no tag

my $img3 = $t->push_image('lib/store', 'v3');
$r = $t->push_manifest('lib/store', 'sha256:' . hex_of(RegTest::digest(
        $img3->{manifest} . ' ')), $img3->{manifest} . ' ', $img3->{type});
is($r->{status}, 201, 'manifest by digest');
my $bd = RegTest::digest($img3->{manifest} . ' ');
is(slurp("$v2/repositories/lib/store/_manifests/revisions/sha256/" . hex_of($bd)
         . '/link'), $bd, 'revision link of a manifest by digest');

# deleting a tag removes its directory

$r = $t->req('DELETE', '/v2/lib/store/manifests/v3');
is($r->{status}, 202, 'tag deleted');
ok(!-e "$tags/v3", 'deleted tag directory removed');

# only distribution's names in the store (and the module's temporary dir
# and repository locks, which distribution never looks at)

my @unexpected;
find({ no_chdir => 1, wanted => sub {
    my $p = substr $File::Find::name, length $v2;
    return if $p eq '';
    return if $p =~ m{^/_ngx_tmp(/|$)};
    return if $p =~ m{^/_ngx_locks(/[0-9a-f]{64})?$};
    return if $p =~ m{^/blobs(/sha256(/[0-9a-f]{2}(/[0-9a-f]{64}(/data)?)?)?)?$};
    return if $p =~ m{^/repositories(/[a-z0-9._/-]+?)?$} && !-f $File::Find::name;
    return if $p =~ m{^/repositories/.+/_layers(/sha256(/[0-9a-f]{64}(/link)?)?)?$};
    return if $p =~ m{^/repositories/.+/_manifests(/revisions(/sha256(/[0-9a-f]{64}(/link)?)?)?)?$};
    return if $p =~ m{^/repositories/.+/_manifests/tags(/[\w.-]+(/current(/link)?|/index(/sha256(/[0-9a-f]{64}(/link)?)?)?)?)?$};
    return if $p =~ m{^/repositories/.+/_uploads$};
    push @unexpected, $p;
} }, $v2);
is(join(' ', @unexpected), '', 'no unexpected files in the store');

my @tmp;
find(sub { push @tmp, $File::Find::name if -f }, "$v2/_ngx_tmp") if -d "$v2/_ngx_tmp";
is("@tmp", '', 'no temporary files left');

$t->stop();

# the other direction: a store written by hand is served

$t = RegTest->new();
$v2 = $t->root . '/docker/registry/v2';

my $config = '{"architecture":"amd64","os":"linux"}';
my $layer = 'hand-made layer';
my ($cd, $ld) = map { RegTest::digest($_) } $config, $layer;

my $manifest = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => 'application/vnd.docker.distribution.manifest.v2+json',
    config => { mediaType => 'application/vnd.docker.container.image.v1+json',
                digest => $cd, size => length $config },
    layers => [ { mediaType => 'application/vnd.docker.image.rootfs.diff.tar.gzip',
                  digest => $ld, size => length $layer } ],
});
my $md = RegTest::digest($manifest);

for ([$config, $cd], [$layer, $ld], [$manifest, $md]) {
    spew(data_path($_->[1]), $_->[0]);
}
my $repo = "$v2/repositories/hand/made";
spew("$repo/_layers/sha256/" . hex_of($cd) . '/link', $cd);
spew("$repo/_layers/sha256/" . hex_of($ld) . '/link', $ld);
spew("$repo/_manifests/revisions/sha256/" . hex_of($md) . '/link', $md);
spew("$repo/_manifests/tags/latest/current/link", $md);
spew("$repo/_manifests/tags/latest/index/sha256/" . hex_of($md) . '/link', $md);

$r = $t->req('GET', '/v2/hand/made/manifests/latest');
is($r->{status}, 200, 'hand-made manifest by tag');
is($r->{content}, $manifest, 'hand-made manifest bytes');
is($r->{headers}{'content-type'},
   'application/vnd.docker.distribution.manifest.v2+json',
   'hand-made manifest type from its mediaType');
is($r->{headers}{'docker-content-digest'}, $md, 'hand-made manifest digest');
is($r->{headers}{'docker-distribution-api-version'}, $API,
   'hand-made manifest api version');

$r = $t->req('GET', "/v2/hand/made/blobs/$ld");
is($r->{status}, 200, 'hand-made blob');
is($r->{content}, $layer, 'hand-made blob bytes');

$r = $t->req('GET', '/v2/hand/made/tags/list');
is_deeply(eval { decode_json($r->{content}) },
          { name => 'hand/made', tags => ['latest'] }, 'hand-made tags');

$r = $t->req('GET', '/v2/_catalog');
is_deeply(eval { decode_json($r->{content}) }, { repositories => ['hand/made'] },
          'hand-made catalog');

# pushing a manifest onto the hand-made repository

my $img4 = $t->push_image('hand/made', 'v2');
is($t->req('GET', '/v2/hand/made/manifests/v2')->{content}, $img4->{manifest},
   'push into a hand-made repository');

$t->stop();

done_testing();
