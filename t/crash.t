#!/usr/bin/perl

# A worker killed (-9) in the middle of a push: nothing partial becomes
# visible, the master's new worker serves on, and the same push then
# succeeds.  A chunked upload keeps its last complete chunk across the
# kill.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Digest::SHA qw(sha256_hex);

use lib 't/lib';
use RegTest;

# the kills are the test's own doing
my $t = RegTest->new(expect_in_log => qr/exited on signal 9/);
my $v2 = $t->root . '/docker/registry/v2';

my $blob = join '', map { sha256_hex("crash $_") } 1 .. 200_000;   # 12.8 MB
my $digest = RegTest::digest($blob);
(my $hex = $digest) =~ s/^sha256://;

# sends the headers and half of a body, then kills the only worker once
# the upload's data file has reached $on_disk bytes
sub push_half_then_kill {
    my ($request, $body, $on_disk) = @_;

    my ($worker) = $t->pids_of_workers;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port)
        or die "connect: $!";
    print $s $request, substr($body, 0, int(length($body) / 2));

    my $written = 0;

    for (1 .. 100) {
        # a session's data file, or a monolithic push's temporary file
        $written = grep { -s $_ >= $on_disk }
                   glob("$v2/repositories/crash/*/_uploads/*/data"),
                   glob("$v2/_ngx_tmp/*");
        last if $written;
        select undef, undef, undef, 0.05;
    }

    kill 'KILL', $worker;
    close $s;

    for (1 .. 100) {
        my @w = $t->pids_of_workers;
        return $written if @w && $w[0] != $worker;
        select undef, undef, undef, 0.05;
    }

    die "no new worker\n";
}

# ---- monolithic ----

ok(push_half_then_kill("POST /v2/crash/mono/blobs/uploads/?digest=$digest HTTP/1.1\r\n"
    . "Host: x\r\nContent-Length: " . length($blob) . "\r\n\r\n",
    $blob, int(length($blob) / 2)), 'half the body on disk at the kill');

my $r = $t->req('GET', "/v2/crash/mono/blobs/$digest");
is($r->{status}, 404, 'killed monolithic push: blob unknown');
ok(!-e "$v2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data",
   'no blob data published');
ok(!-e "$v2/repositories/crash/mono/_layers/sha256/$hex/link",
   'no layer link');

$r = $t->req('GET', '/v2/');
is($r->{status}, 200, 'the new worker serves');

$r = $t->req('POST', "/v2/crash/mono/blobs/uploads/?digest=$digest",
             content => $blob);
is($r->{status}, 201, 'the same push succeeds');

$r = $t->req('GET', "/v2/crash/mono/blobs/$digest");
ok($r->{status} == 200 && $r->{content} eq $blob, 'and reads back whole');

# ---- chunked ----

$r = $t->req('POST', '/v2/crash/chunked/blobs/uploads/');
my $loc = $r->{headers}{location};
my $first = substr($blob, 0, 1_000_000);

$r = $t->req('PATCH', $loc, content => $first,
             headers => { 'Content-Range' => '0-999999' });
is($r->{status}, 202, 'first chunk');

# the second chunk dies halfway, its first half on disk
my $second = substr($blob, 1_000_000);
my $rest = length $second;
ok(push_half_then_kill("PATCH $loc HTTP/1.1\r\nHost: x\r\n"
    . "Content-Range: 1000000-" . (1_000_000 + $rest - 1) . "\r\n"
    . "Content-Length: $rest\r\n\r\n",
    $second, 1_000_000 + int($rest / 2)), 'half the chunk on disk at the kill');

$r = $t->req('GET', $loc);
is($r->{status}, 204, 'upload survives the kill');
is($r->{headers}{range}, '0-999999', 'at its last complete chunk');

$r = $t->req('PATCH', $loc, content => substr($blob, 1_000_000),
             headers => { 'Content-Range' => '1000000-'
                                             . (length($blob) - 1) });
is($r->{status}, 202, 'the chunk again');

$r = $t->req('PUT', "$loc?digest=$digest");
is($r->{status}, 201, 'digest matches: stray bytes were dropped');

$r = $t->req('GET', "/v2/crash/chunked/blobs/$digest");
ok($r->{status} == 200 && $r->{content} eq $blob, 'reads back whole');

$t->stop;
done_testing();
