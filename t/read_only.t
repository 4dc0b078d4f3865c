#!/usr/bin/perl

# registry_read_only: maintenance mode.  Every write is refused with 405
# UNSUPPORTED and a message saying why, reads are served, and it is
# switched on and off by a reload that drops neither connections nor the
# uploads in flight.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;

use lib 't/lib';
use RegTest;

sub check_error { RegTest::check_error(@_) }

sub read_only_refusal {
    my ($r, $name) = @_;
    check_error($r, 405, 'UNSUPPORTED', $name);
    like($r->{content}, qr/read-only for maintenance/, "$name message");
}

sub with_arg {
    my ($url, $arg) = @_;
    return $url . (index($url, '?') < 0 ? '?' : '&') . $arg;
}

sub repositories {
    my ($t) = @_;
    opendir(my $dh, $t->root . '/docker/registry/v2/repositories') or return 0;
    return scalar grep { !/^\./ } readdir $dh;
}

###############################################################################

my $t = RegTest->new(delete => 1);

my $img = $t->push_image('ro/app', 'v1');
my $blob = $t->push_blob('ro/app', 'a blob pushed before maintenance');

# an upload session opened before maintenance, finished after it
my $r = $t->req('POST', '/v2/ro/app/blobs/uploads/');
is($r->{status}, 202, 'session opened before maintenance');
my $session = $r->{headers}{location};

# a chunk in flight while the reload switches read-only on: the old worker,
# which still has the old conf, finishes it
my $chunk = 'x' x 300_000;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port)
    or die "connect: $!";
$s->autoflush(1);
print $s "PATCH $session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    . "Content-Range: 0-" . (length($chunk) - 1) . "\r\n"
    . "Content-Length: " . length($chunk) . "\r\n\r\n"
    . substr($chunk, 0, 1000);

my @before = $t->pids_of_workers;
$t->reconfigure(location_extra => 'registry_read_only on;', wait => 0);

my $started = 0;
for (1 .. 200) {
    my %b = map { $_ => 1 } @before;
    $started = grep { !$b{$_} } $t->pids_of_workers;
    last if $started;
    select undef, undef, undef, 0.05;
}
ok($started, 'reload: new workers started while the chunk is in flight');

print $s substr($chunk, 1000);
my $reply = '';
while (sysread($s, my $buf, 65536)) { $reply .= $buf }
close $s;
like($reply, qr{^HTTP/1\.1 202 }, 'chunk in flight finished by the old worker');
like($reply, qr{\r\nRange: 0-299999\r\n}i, 'chunk in flight: range');

$t->reload_done();

# reads are served

is($t->req('GET', "/v2/ro/app/manifests/v1")->{content}, $img->{manifest},
   'read-only: manifest GET');
is($t->req('HEAD', "/v2/ro/app/manifests/$img->{digest}")->{status}, 200,
   'read-only: manifest HEAD');
is($t->req('GET', "/v2/ro/app/blobs/$blob")->{content},
   'a blob pushed before maintenance', 'read-only: blob GET');
is($t->req('GET', '/v2/ro/app/tags/list')->{status}, 200,
   'read-only: tags list');
is($t->req('GET', '/v2/_catalog')->{status}, 200, 'read-only: catalog');
is($t->req('GET', '/v2/')->{status}, 200, 'read-only: base');

$r = $t->req('GET', $session);
is($r->{status}, 204, 'read-only: upload status is a read');
is($r->{headers}{range}, '0-299999', 'read-only: upload status range');

# every write is refused, and nothing is written

my $repos = repositories($t);
my $d = RegTest::digest('during maintenance');

read_only_refusal($t->req('POST', '/v2/ro/new/blobs/uploads/'),
                  'read-only: upload start');
read_only_refusal($t->req('POST', "/v2/ro/new/blobs/uploads/?digest=$d",
                          content => 'during maintenance'),
                  'read-only: monolithic upload');
read_only_refusal($t->req('POST', '/v2/ro/new/blobs/uploads/?mount='
                          . "$blob&from=ro/app"), 'read-only: mount');
read_only_refusal($t->req('PATCH', $session, content => 'more',
                          headers => { 'Content-Range' => '300000-300003' }),
                  'read-only: chunk');
read_only_refusal($t->req('PUT', with_arg($session, "digest=$d")),
                  'read-only: upload commit');
read_only_refusal($t->req('DELETE', $session), 'read-only: upload cancel');
read_only_refusal($t->push_manifest('ro/app', 'v2', $img->{manifest}),
                  'read-only: manifest PUT');
read_only_refusal($t->req('DELETE', "/v2/ro/app/manifests/$img->{digest}"),
                  'read-only: manifest DELETE');
read_only_refusal($t->req('DELETE', "/v2/ro/app/blobs/$blob"),
                  'read-only: blob DELETE');

is(repositories($t), $repos, 'read-only: no repository created');
is($t->req('GET', "/v2/ro/app/blobs/$blob")->{status}, 200,
   'read-only: blob still there');
is($t->req('GET', '/v2/ro/app/manifests/v2')->{status}, 404,
   'read-only: tag not written');

# switched off by another reload: the session opened before maintenance
# finishes, and writes work again

$t->reconfigure(location_extra => 'registry_read_only off;');

my $whole = $chunk . 'tail';
$r = $t->req('PUT', with_arg($session, 'digest=' . RegTest::digest($whole)),
             content => 'tail',
             headers => { 'Content-Range' => '300000-300003' });
is($r->{status}, 201, 'writable again: the session survived maintenance');
is($t->req('GET', '/v2/ro/app/blobs/' . RegTest::digest($whole))->{content},
   $whole, 'writable again: its bytes');
is($t->push_manifest('ro/app', 'v2', $img->{manifest})->{status}, 201,
   'writable again: manifest PUT');

unlike($t->error_log, qr/\[(alert|emerg)\]|exited on signal/,
       'no alerts, no crashed worker');

done_testing();
