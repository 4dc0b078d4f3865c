#!/usr/bin/perl

# HTTP/2 (h2c, prior knowledge): bodies arrive through nginx's HTTP/2 code,
# which feeds unbuffered request bodies differently from HTTP/1.1, so push
# and pull are checked end to end over it with curl.

use strict;
use warnings;

use Test::More;
use Digest::SHA;

use lib 't/lib';
use RegTest;

plan(skip_all => 'no curl') unless -x '/usr/bin/curl';

my $t = RegTest->new(listen_extra => 'http2');
my $base = $t->url('');
my $dir = $t->dir;

# a 20 MiB body, larger than any buffer nginx keeps per stream
open(my $fh, '>', "$dir/blob") or die $!;
my $sha = Digest::SHA->new(256);
for my $i (1 .. 20) {
    my $chunk = pack('N', $i) x (256 * 1024);
    print $fh $chunk;
    $sha->add($chunk);
}
close $fh;
my $digest = 'sha256:' . $sha->hexdigest;

sub curl {
    my @args = @_;
    my $out = `curl -s --http2-prior-knowledge -D $dir/headers -o $dir/body -w '%{http_code} %{http_version}' @args`;
    my $headers = do { local (@ARGV, $/) = "$dir/headers"; <> } // '';
    return ($out, $headers);
}

my ($status, $headers) = curl("-X POST --data-binary \@$dir/blob",
    "'$base/v2/h2/repo/blobs/uploads/?digest=$digest'");
is($status, '201 2', 'monolithic push over HTTP/2');
like($headers, qr/^docker-distribution-api-version: registry\/2.0\r?$/mi,
    'api version header over HTTP/2');

# the same bytes in two chunks to a second repository
system("head -c 12582912 $dir/blob > $dir/p1; tail -c +12582913 $dir/blob > $dir/p2");

($status, $headers) = curl('-X POST', "'$base/v2/h2/other/blobs/uploads/'");
is($status, '202 2', 'upload session over HTTP/2');
my ($location) = $headers =~ /^location: (\S+)\r?$/mi;
ok($location, 'upload location');

($status, $headers) = curl("-X PATCH -H 'Content-Range: 0-12582911'",
    "--data-binary \@$dir/p1 '$base$location'");
is($status, '202 2', 'first chunk with Content-Range');
like($headers, qr/^range: 0-12582911\r?$/mi, 'range after first chunk');

($status, $headers) = curl('-X PATCH -T -', "'$base$location' < $dir/p2");
is($status, '202 2', 'second chunk streamed without Content-Length');
like($headers, qr/^range: 0-20971519\r?$/mi, 'range after second chunk');

($status) = curl('-X PUT', "'$base$location?digest=$digest'");
is($status, '201 2', 'upload completed');

for my $repo (qw(h2/repo h2/other)) {
    ($status) = curl("'$base/v2/$repo/blobs/$digest'");
    is($status, '200 2', "pull from $repo over HTTP/2");
    my $got = Digest::SHA->new(256)->addfile("$dir/body")->hexdigest;
    is("sha256:$got", $digest, "$repo: bytes read back");
}

($status) = curl("-X POST --data-binary \@$dir/p1",
    "'$base/v2/h2/bad/blobs/uploads/?digest=$digest'");
is($status, '400 2', 'digest mismatch over HTTP/2');
my $body = do { local (@ARGV, $/) = "$dir/body"; <> };
like($body, qr/"code":"DIGEST_INVALID"/, 'DIGEST_INVALID');

$t->stop;
done_testing();
