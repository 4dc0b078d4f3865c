package Bench::Content;

# What the benchmark reads, written straight into the store (Bench::Store):
#
#   bench/pull        blobs of 4 KiB, 1 MiB and 1 GiB, a few small layers,
#                     an OCI image manifest over them tagged "latest"
#   bench/tags        one small image and 10,000 tags t00000..t09999 on it
#   catalog/r00000 .. catalog/r09999   10,000 repositories, a layer each
#   bench/referrers   a subject manifest (tag "subject") and 1,000
#                     referrers: manifests with `subject` and `artifactType`
#
# load() returns the facts the measurements need (digests, sizes, paths).
#
# load_big() writes the second store, the one of the listings at scale:
#
#   catalog/r00000 .. catalog/r99999   100,000 repositories, a layer each
#   bench/tags        one small image and 100,000 tags t00000..t99999
#   bench/pull        one small image tagged "latest" (the manifest GETs
#                     of the latency lines under catalog paging)

use strict;
use warnings;
use feature 'state';

use Digest::SHA qw(sha256);

use Bench::Store;
use Bench::Util qw(say_step spawn_code reap);

our $TAGS = 10_000;
our $REPOS = 10_000;
our $REFERRERS = 1_000;
our $BIG_REPOS = 100_000;
our $BIG_TAGS = 100_000;

my $KIB = 1024;
my $MIB = 1024 * 1024;

# $n pseudo-random bytes (a SHA-256 chain seeded by $seed): incompressible,
# reproducible, and fast enough for a few MiB
sub bytes {
    my ($seed, $n) = @_;

    my $block = '';
    my $h = "bench-$seed";
    while (length($block) < 64 * $KIB) {
        $h = sha256($h);
        $block .= $h;
    }

    my $out = '';
    my $i = 0;
    while (length($out) < $n) {
        $out .= sha256("$seed:" . $i++) . substr($block, 32);
    }

    return substr($out, 0, $n);
}

# $big: a Bench::Big; its "pull" variant is the 1 GiB blob
sub load {
    my ($store_root, $big) = @_;

    my $st = Bench::Store->new($store_root);
    my %c = (store => $st, tags_repo => 'bench/tags');

    load_pull($st, \%c, $big);
    say_step('loaded bench/pull (4 KiB, 1 MiB, 1 GiB blobs, manifest)');

    # the bulk in two processes; the blobs they share are written first
    small_parts($st);
    my @jobs = (
        spawn_code(sub { load_tags($st, $c{tags_repo}) }),
        spawn_code(sub { load_catalog($st, 0, $REPOS) }),
    );

    load_referrers($st, \%c);
    my @failed = grep { reap($_, 600) != 0 } @jobs;
    die "loading the store failed\n" if @failed;

    say_step("loaded bench/tags ($TAGS tags), catalog/* ($REPOS "
             . "repositories), bench/referrers ($REFERRERS referrers)");

    return \%c;
}

# The second store: 100,000 repositories (and the two of bench/), a
# repository of 100,000 tags; written by three processes
sub load_big {
    my ($store_root) = @_;

    my $st = Bench::Store->new($store_root);
    my %c = (store => $st, tags_repo => 'bench/tags', repo => 'bench/pull');

    small_parts($st);
    $c{manifest} = small_image($st, $c{repo}, 'latest');

    my $half = $BIG_REPOS / 2;
    my @jobs = (
        spawn_code(sub { load_tags($st, $c{tags_repo}, $BIG_TAGS) }),
        spawn_code(sub { load_catalog($st, 0, $half) }),
        spawn_code(sub { load_catalog($st, $half, $BIG_REPOS) }),
    );

    my @failed = grep { reap($_, 1800) != 0 } @jobs;
    die "loading the second store failed\n" if @failed;

    # every repository, sorted as both servers list them
    $c{repos} = [ sort(@c{qw(repo tags_repo)},
                       map { catalog_name($_) } 0 .. $BIG_REPOS - 1) ];
    $c{tags} = [ map { tag_name($_) } 0 .. $BIG_TAGS - 1 ];

    say_step("loaded the second store: catalog/* ($BIG_REPOS "
             . "repositories), bench/tags ($BIG_TAGS tags), bench/pull");

    return \%c;
}

sub catalog_name { sprintf 'catalog/r%05d', $_[0] }
sub tag_name { sprintf 't%05d', $_[0] }

sub small_blob {
    my ($st, $repo, $seed, $size) = @_;
    my $hex = $st->blob(bytes($seed, $size));
    $st->layer($repo, $hex);
    return [$hex, $size];
}

sub load_pull {
    my ($st, $c, $big) = @_;

    my $repo = 'bench/pull';
    my $config = '{"architecture":"amd64","os":"linux","rootfs":'
               . '{"type":"layers","diff_ids":[]},"config":{}}';

    $c->{blob4k} = small_blob($st, $repo, '4k', 4 * $KIB);
    $c->{blob1m} = small_blob($st, $repo, '1m', $MIB);

    my $hex = $big->store_variant($st, 'pull');
    $st->layer($repo, $hex);
    $c->{blob1g} = [$hex, $big->size];

    my @small = map { small_blob($st, $repo, "layer$_", 1500 + $_) } 1 .. 3;
    my $cfg = $st->blob($config);

    $c->{manifest} = $st->put_manifest($repo,
        config => [$cfg, length $config],
        layers => [$c->{blob1m}, $c->{blob4k}, @small, $c->{blob1g}],
        extra => { annotations => {
            'org.opencontainers.image.title' => 'ngx registry bench' } },
        tags => ['latest']);
    $c->{repo} = $repo;
}

# The config and layer of the small images: the same bytes everywhere
sub small_parts {
    my ($st) = @_;

    state $config = '{"architecture":"amd64","os":"linux","rootfs":'
                  . '{"type":"layers","diff_ids":[]}}';
    state $layer = bytes('small', 2 * $KIB);

    return ([$st->blob($config), length $config],
            [$st->blob($layer), length $layer]);
}

# one small image in $repo, tagged @tags
sub small_image {
    my ($st, $repo, @tags) = @_;

    my ($config, $layer) = small_parts($st);
    $st->layer($repo, $layer->[0]);

    return $st->put_manifest($repo, config => $config, layers => [$layer],
                             tags => \@tags);
}

sub load_tags {
    my ($st, $repo, $count) = @_;
    small_image($st, $repo, map { tag_name($_) } 0 .. ($count // $TAGS) - 1);
    return 1;
}

# Repositories catalog/r<from> .. catalog/r<to - 1>, each with one layer
# link: what makes a directory a repository for both servers (a _layers
# directory; both read each repository's directory and go no deeper).
# Full images would triple the directories to create, and to delete at
# the end (slow where the file system discards freed blocks).
sub load_catalog {
    my ($st, $from, $to) = @_;

    my (undef, $layer) = small_parts($st);
    $st->layer(catalog_name($_), $layer->[0]) for $from .. $to - 1;

    return 1;
}

sub load_referrers {
    my ($st, $c) = @_;

    my $repo = 'bench/referrers';
    my $subject = small_image($st, $repo, 'subject');
    my $empty = $st->blob('{}');
    my $sbom = small_blob($st, $repo, 'sbom', 512);
    $st->layer($repo, $empty);

    for my $i (1 .. $REFERRERS) {
        $st->put_manifest($repo,
            config => [$empty, 2],
            config_type => Bench::Store::OCI_EMPTY,
            layers => [$sbom],
            extra => {
                artifactType => $i % 2 ? 'application/vnd.example.sbom+json'
                                       : 'application/vnd.example.sig',
                subject => Bench::Store::descriptor(
                    Bench::Store::OCI_MANIFEST, $subject->{hex},
                    length $subject->{bytes}),
                annotations => { 'org.example.n' => "$i" },
            });
    }

    $c->{ref_repo} = $repo;
    $c->{subject} = $subject->{hex};
}

1;
