package Bench::Store;

# Writes bulk content straight into a store with distribution's layout
# (/work/shared/design/store-layout.md): blob bytes under
# blobs/sha256/<2>/<hex>/data, links holding "sha256:<hex>" without a
# newline.  Much faster than pushing 20,000 manifests through an API, and
# the same files either server would have written.
#
#   my $st = Bench::Store->new($root);
#   my $hex = $st->blob($bytes);            # stores the bytes, returns hex
#   $st->layer($repo, $hex);                # _layers link
#   $st->revision($repo, $hex);             # _manifests/revisions link
#   $st->tag($repo, $tag, $hex);            # current + index links
#   $st->tag_history($repo, $tag, $hex);    # an index link only: what the
#                                           # tag pointed at before
#   $st->mtime($when);                      # every file written from now
#                                           # on gets that mtime (utime)

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use JSON::PP ();

use Bench::Util qw(spew);

my $JSON = JSON::PP->new->canonical;

use constant OCI_MANIFEST => 'application/vnd.oci.image.manifest.v1+json';
use constant OCI_CONFIG   => 'application/vnd.oci.image.config.v1+json';
use constant OCI_LAYER    => 'application/vnd.oci.image.layer.v1.tar+gzip';
use constant OCI_EMPTY    => 'application/vnd.oci.empty.v1+json';

sub new {
    my ($class, $root) = @_;
    my $self = bless { root => $root, v2 => "$root/docker/registry/v2",
                       made => {} }, $class;
    $self->_dir("$self->{v2}/repositories");
    return $self;
}

sub v2 { $_[0]{v2} }

sub blob_path {
    my ($self, $hex) = @_;
    return "$self->{v2}/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data";
}

# mkdir -p, remembering what exists
sub _dir {
    my ($self, $dir) = @_;

    return if $self->{made}{$dir};

    my $path = '';
    for my $part (grep { length } split m{/}, $dir) {
        $path .= "/$part";
        next if $self->{made}{$path};
        mkdir $path or $!{EEXIST} or die "mkdir $path: $!\n";
        $self->{made}{$path} = 1;
    }
}

sub _file {
    my ($self, $path, $bytes) = @_;
    (my $dir = $path) =~ s{/[^/]+$}{};
    $self->_dir($dir);
    spew($path, $bytes);

    my $t = $self->{mtime};
    utime $t, $t, $path or die "utime $path: $!\n" if defined $t;
}

sub mtime {
    my ($self, $when) = @_;
    $self->{mtime} = $when;
}

sub blob {
    my ($self, $bytes) = @_;
    my $hex = sha256_hex($bytes);
    $self->_file($self->blob_path($hex), $bytes) unless $self->{blobs}{$hex}++;
    return $hex;
}

# a blob whose bytes are a file already written ($hex known)
sub blob_from_file {
    my ($self, $file, $hex) = @_;
    my $path = $self->blob_path($hex);
    (my $dir = $path) =~ s{/[^/]+$}{};
    $self->_dir($dir);
    copy($file, $path) or die "copy $file: $!\n";
    return $hex;
}

sub _link {
    my ($self, $path, $hex) = @_;
    $self->_file($path, "sha256:$hex");
}

sub layer {
    my ($self, $repo, $hex) = @_;
    $self->_link("$self->{v2}/repositories/$repo/_layers/sha256/$hex/link",
                 $hex);
}

sub revision {
    my ($self, $repo, $hex) = @_;
    $self->_link("$self->{v2}/repositories/$repo/_manifests/revisions/"
                 . "sha256/$hex/link", $hex);
}

sub tag {
    my ($self, $repo, $tag, $hex) = @_;
    my $t = "$self->{v2}/repositories/$repo/_manifests/tags/$tag";
    $self->_link("$t/current/link", $hex);
    $self->_link("$t/index/sha256/$hex/link", $hex);
}

# a tag's index entry alone: the tag pointed at $hex once and was moved
sub tag_history {
    my ($self, $repo, $tag, $hex) = @_;
    $self->_link("$self->{v2}/repositories/$repo/_manifests/tags/$tag/index/"
                 . "sha256/$hex/link", $hex);
}

sub descriptor {
    my ($type, $hex, $size) = @_;
    return { mediaType => $type, digest => "sha256:$hex", size => $size };
}

# An OCI image manifest (bytes) over a config and layers, each [hex, size];
# %extra goes into the top level (subject, artifactType, annotations).
sub image_manifest {
    my (%o) = @_;

    my $m = {
        schemaVersion => 2,
        mediaType => OCI_MANIFEST,
        config => descriptor($o{config_type} || OCI_CONFIG, @{ $o{config} }),
        layers => [ map { descriptor(OCI_LAYER, @$_) } @{ $o{layers} } ],
        %{ $o{extra} || {} },
    };

    return $JSON->encode($m);
}

# A manifest and its config stored and linked in $repo (layers must be
# linked already); returns { hex, bytes }.
sub put_manifest {
    my ($self, $repo, %o) = @_;

    my $bytes = image_manifest(%o);
    my $hex = $self->blob($bytes);

    $self->layer($repo, $o{config}[0]);
    $self->revision($repo, $hex);
    $self->tag($repo, $_, $hex) for @{ $o{tags} || [] };

    return { hex => $hex, bytes => $bytes };
}

1;
