#!/usr/bin/perl

# A session's saved state (_uploads/<id>/ngx_registry_state) is checked
# before it reaches the hash code: a state file whose OpenSSL context is
# corrupted (a huge "num", random bytes, a length that is not the one of
# its offset, a bad md_len), whose bytes are random, or whose size is not
# the size of a state makes the session unknown (404 BLOB_UPLOAD_UNKNOWN,
# an [error] line about an invalid state file), and no worker crashes.
#
# The file: 8 magic bytes "NGXREG1\n", then the C struct
# { ngx_uint_t alg; uint64_t offset; { ngx_uint_t alg; union { SHA256_CTX;
# SHA512_CTX } } }.  On x86-64: alg at 8, offset at 16, hash.alg at 24,
# the context at 32.  SHA256_CTX: h[8] (4 bytes each), Nl, Nh, data[16],
# num, md_len: num at 136, md_len at 140.  SHA512_CTX: h[8] (8 bytes
# each), Nl, Nh (8 bytes each), u.p[128], num, md_len: num at 240, md_len
# at 244.  248 bytes in all.

use strict;
use warnings;

use Test::More;
use Config;
use Digest::SHA qw(sha256_hex sha512_hex);

use lib 't/lib';
use RegTest;

plan(skip_all => 'the offsets are those of x86-64 Linux')
    unless $Config{archname} =~ /^x86_64-linux/;

my $STATE_SIZE = 248;

my $t = RegTest->new();
my $v2 = $t->root . '/docker/registry/v2';

sub code { RegTest::error_code($_[0]) }

# a session of repository $name with one 20-byte chunk; returns
# (location, state file)
sub session {
    my ($name, $query) = @_;

    my $r = $t->req('POST', "/v2/$name/blobs/uploads/"
                            . (defined $query ? "?$query" : ''));
    die "POST: $r->{status}\n" unless $r->{status} == 202;
    my $loc = $r->{headers}{location};

    $r = $t->req('PATCH', $loc, content => 'the first 20 bytes..',
                 headers => { 'Content-Range' => '0-19' });
    die "PATCH: $r->{status}\n" unless $r->{status} == 202;

    my ($id) = $loc =~ m{/([^/]+)$};
    my $state = "$v2/repositories/$name/_uploads/$id/ngx_registry_state";
    die "no state file $state\n" unless -f $state && -s $state == $STATE_SIZE;

    return ($loc, $state);
}

sub poke {
    my ($bytes, $at, $new) = @_;
    substr($bytes, $at, length $new) = $new;
    return $bytes;
}

# the file as the module wrote it: is the layout the one described above?
{
    my ($loc, $state) = session('st/layout');
    my $s = RegTest::slurp($state);
    is(substr($s, 0, 8), "NGXREG1\n", 'layout: magic');
    is(unpack('Q<', substr($s, 16, 8)), 20, 'layout: offset at 16');
    is(unpack('V', substr($s, 32 + 32, 4)), 20 * 8, 'layout: SHA256 Nl');
    is(unpack('V', substr($s, 136, 4)), 20, 'layout: SHA256 num at 136');
    is(unpack('V', substr($s, 140, 4)), 32, 'layout: SHA256 md_len at 140');
    is(substr($s, 32 + 40, 20), 'the first 20 bytes..',
       'layout: the pending block in data[]');

    my ($loc512, $state512) = session('st/layout', 'digest-algorithm=sha512');
    $s = RegTest::slurp($state512);
    is(unpack('V', substr($s, 240, 4)), 20, 'layout: SHA512 num at 240');
    is(unpack('V', substr($s, 244, 4)), 64, 'layout: SHA512 md_len at 244');

    # the untouched session still completes
    my $blob = 'the first 20 bytes..and the rest';
    my $r = $t->req('PATCH', $loc, content => substr($blob, 20),
                    headers => {
                        'Content-Range' => '20-' . (length($blob) - 1) });
    is($r->{status}, 202, 'untouched session: second chunk');
    $r = $t->req('PUT', "$loc?digest=" . RegTest::digest($blob));
    is($r->{status}, 201, 'untouched session: completed');
}

srand(20240601);
my $random = join '', map { chr(int rand 256) } 1 .. $STATE_SIZE;

my @cases = (
    [ 'SHA256 num huge', undef,
      sub { poke($_[0], 136, pack('V', 0x7fffffff)) } ],
    [ 'SHA256 num 0xffffffff', undef,
      sub { poke($_[0], 136, pack('V', 0xffffffff)) } ],
    [ 'SHA512 num huge', 'digest-algorithm=sha512',
      sub { poke($_[0], 240, pack('V', 0x7fffffff)) } ],
    [ 'SHA256 context random', undef,
      sub { substr($_[0], 0, 32) . substr($random, 32) } ],
    [ 'SHA256 Nl not that of the offset', undef,
      sub { poke($_[0], 64, pack('V', 1000 * 8)) } ],
    [ 'SHA256 md_len 1000', undef,
      sub { poke($_[0], 140, pack('V', 1000)) } ],
    [ 'all bytes random', undef,
      sub { $random } ],
    [ 'one byte short', undef,
      sub { substr($_[0], 0, $STATE_SIZE - 1) } ],
    [ 'one byte long', undef,
      sub { $_[0] . "\0" } ],
    [ 'empty', undef,
      sub { '' } ],
);

my $n = 0;

for my $case (@cases) {
    my ($what, $query, $corrupt) = @$case;
    my $name = 'st/case' . $n++;

    my ($loc, $state) = session($name, $query);
    my $good = RegTest::slurp($state);
    my $bad = $corrupt->($good);
    RegTest::spew($state, $bad);

    my @workers = $t->pids_of_workers;
    my $log_before = length $t->error_log;

    my $r = $t->req('PATCH', $loc, content => 'twenty more bytes...',
                    headers => { 'Content-Range' => '20-39' });
    is($r->{status}, 404, "$what: PATCH 404");
    is(code($r), 'BLOB_UPLOAD_UNKNOWN', "$what: PATCH BLOB_UPLOAD_UNKNOWN");

    $r = $t->req('GET', $loc);
    is($r->{status}, 404, "$what: GET of the session 404");

    $r = $t->req('PUT', "$loc?digest="
                 . RegTest::digest('the first 20 bytes..'));
    is($r->{status}, 404, "$what: PUT 404");
    is(code($r), 'BLOB_UPLOAD_UNKNOWN', "$what: PUT BLOB_UPLOAD_UNKNOWN");

    is_deeply([ $t->pids_of_workers ], \@workers, "$what: no worker replaced");

    my $log = substr($t->error_log, $log_before);
    like($log, qr/\[error\].*(?:invalid\ state\ file
                               |ngx_registry_state"\ is\ not\ a\ file)/x,
         "$what: [error] line about an invalid state file");
    unlike($log, qr/exited on signal/, "$what: no worker crashed");
}

# the server still works
my $d = $t->push_blob('st/after', 'after the corrupted states');
is($t->req('GET', "/v2/st/after/blobs/$d")->{content},
   'after the corrupted states', 'a push after the corrupted states');

$t->stop;
done_testing();
