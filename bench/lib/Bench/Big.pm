package Bench::Big;

# 1 GiB blobs without hashing 1 GiB each time.  One random base file is
# made once (openssl rand); a "variant" is the base with its last 64 bytes
# (one SHA-256 block) replaced by a label, so every push can send a new,
# distinct blob.  The SHA-256 state after the first SIZE - 64 bytes is
# kept (Digest::SHA clone), and a variant's digest costs one block.
#
#   my $big = Bench::Big->new($dir);           # base.bin, chunk files
#   my $hex = $big->variant($file, $label);    # rewrite $file's tail
#   my $hex = $big->chunks_variant($label);    # same for the last chunk
#   $big->chunk_files                          # 16 MiB pieces, in order
#   my $s = $big->concat(4, $label);           # a 4 GiB stream, no file
#
# concat($n, $label) is the base $n times over, the last 64 bytes of the
# whole replaced by the label: { size, hex, read => sub ($offset, $len) },
# read from the base file (in the page cache), never written out.  Its
# digest is one pass of openssl dgst over the stream (5-10 s for 4 GiB on
# 2 cores): the saved state of the base is no use past its first copy,
# and Digest::SHA hashes at a fifth of openssl's speed.

use strict;
use warnings;

use Digest::SHA;
use File::Copy qw(copy);
use File::Temp ();
use Fcntl qw(O_RDONLY O_WRONLY SEEK_SET);

use Bench::Util qw(run_cmd say_step slurp);

my $MIB = 1024 * 1024;

sub new {
    my ($class, $dir, %o) = @_;

    my $self = bless {
        dir   => $dir,
        size  => $o{size} || 1024 * $MIB,
        chunk => $o{chunk} || 16 * $MIB,
    }, $class;

    $self->{base} = "$dir/base.bin";
    $self->_make_base;
    $self->_hash_prefix;
    $self->_split_chunks;

    return $self;
}

sub size { $_[0]{size} }
sub base { $_[0]{base} }
sub chunk_files { @{ $_[0]{chunks} } }

sub _make_base {
    my ($self) = @_;

    my ($rc, $out, $err) = run_cmd(['openssl', 'rand', '-out', $self->{base},
                                    $self->{size}]);
    die "openssl rand: $err" if $rc || -s $self->{base} != $self->{size};
}

sub _hash_prefix {
    my ($self) = @_;

    open(my $fh, '<:raw', $self->{base}) or die "$self->{base}: $!\n";

    my $sha = Digest::SHA->new(256);
    my $left = $self->{size} - 64;

    while ($left > 0) {
        my $n = read($fh, my $buf, $left < 8 * $MIB ? $left : 8 * $MIB);
        die "read $self->{base}: $!\n" unless $n;
        $sha->add($buf);
        $left -= $n;
    }

    $self->{prefix} = $sha;
}

sub _split_chunks {
    my ($self) = @_;

    open(my $in, '<:raw', $self->{base}) or die "$self->{base}: $!\n";

    my @files;
    while (read($in, my $buf, $self->{chunk})) {
        my $f = sprintf '%s/chunk.%03d', $self->{dir}, scalar @files;
        open(my $out, '>:raw', $f) or die "$f: $!\n";
        print $out $buf;
        close $out or die "$f: $!\n";
        push @files, $f;
    }

    $self->{chunks} = \@files;
}

sub tail {
    my ($label) = @_;
    return substr(sprintf('%-64s', "ngx-registry-bench variant $label"),
                  0, 64);
}

sub digest {
    my ($self, $label) = @_;
    my $sha = $self->{prefix}->clone;
    $sha->add(tail($label));
    return $sha->hexdigest;
}

sub _write_tail {
    my ($file, $offset, $label) = @_;

    sysopen(my $fh, $file, O_WRONLY) or die "$file: $!\n";
    sysseek($fh, $offset, SEEK_SET) or die "seek $file: $!\n";
    syswrite($fh, tail($label)) == 64 or die "write $file: $!\n";
    close $fh;
}

# $file (a copy of the base, made if missing) becomes variant $label
sub variant {
    my ($self, $file, $label) = @_;

    unless (-e $file && -s $file == $self->{size}) {
        copy($self->{base}, $file) or die "copy to $file: $!\n";
    }

    _write_tail($file, $self->{size} - 64, $label);
    return $self->digest($label);
}

# the chunk files, taken in order, become variant $label
sub chunks_variant {
    my ($self, $label) = @_;

    my $last = $self->{chunks}[-1];
    _write_tail($last, (-s $last) - 64, $label);
    return $self->digest($label);
}

# variant $label written as a blob of the store (a Bench::Store)
sub store_variant {
    my ($self, $st, $label) = @_;

    my $hex = $self->variant($self->{base}, $label);
    $st->blob_from_file($self->{base}, $hex);
    return $hex;
}

# the base $copies times over, variant $label at the very end
sub concat {
    my ($self, $copies, $label) = @_;

    my $base = $self->{base};
    my $unit = $self->{size};
    my $size = $unit * $copies;
    my $tail = tail($label);

    sysopen(my $fh, $base, O_RDONLY) or die "$base: $!\n";

    # $len bytes at $offset; a read never crosses the end of a copy
    my $read = sub {
        my ($offset, $len) = @_;

        my $at = $offset % $unit;
        $len = $unit - $at if $at + $len > $unit;

        sysseek($fh, $at, SEEK_SET) or die "seek $base: $!\n";
        my $buf = '';
        while (length $buf < $len) {
            my $n = sysread($fh, $buf, $len - length $buf, length $buf);
            die "read $base: " . ($n // $!) . "\n" unless $n;
        }

        # the part of the tail (the last 64 bytes of all) inside $buf
        my $from = $size - 64 - $offset;
        my $start = $from < 0 ? 0 : $from;
        my $skip = $start - $from;
        my $n = $len - $start < 64 - $skip ? $len - $start : 64 - $skip;
        substr($buf, $start, $n) = substr($tail, $skip, $n) if $n > 0;

        return $buf;
    };

    my $stream = { size => $size, read => $read };
    $stream->{hex} = _stream_sha256($stream);

    return $stream;
}

sub _stream_sha256 {
    my ($stream) = @_;

    my $out = File::Temp->new(UNLINK => 1);
    open(my $pipe, '|-', 'openssl', 'dgst', '-sha256', '-r', '-out', "$out")
        or die "openssl dgst: $!\n";
    binmode $pipe;
    fcntl($pipe, 1031, $MIB);    # F_SETPIPE_SZ: fewer switches; may fail

    my $piece = 8 * $MIB;
    for (my $off = 0; $off < $stream->{size}; ) {
        my $len = $stream->{size} - $off < $piece ? $stream->{size} - $off
                                                  : $piece;
        my $buf = $stream->{read}->($off, $len);
        print $pipe $buf or die "openssl dgst: $!\n";
        $off += length $buf;
    }

    close $pipe or die "openssl dgst: exit $?\n";

    my ($hex) = slurp("$out") =~ /^([0-9a-f]{64})/;
    die "openssl dgst: no digest\n" unless $hex;
    return $hex;
}

1;
