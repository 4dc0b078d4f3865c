#!/usr/bin/perl

# Blobs through the pull-through cache, from an upstream that misbehaves:
# - wrong bytes for a digest: the client never gets the last of them (the
#   connection is closed), nothing is published, no temporary file stays;
# - a redirect to a "CDN" (another location of the upstream) after a
#   Basic challenge: followed, and without the Authorization header;
# - an upstream cut mid-body (it says 1 MiB, sends 512 KiB, closes): the
#   client gets a short body, nothing is published, no temporary file
#   stays;
# - clients that hang up mid-fetch (the fetch's leader, 5 times): no
#   temporary file stays, nothing is published, and the next pull gets
#   the blob;
# - over HTTP/2, two clients of a cold blob (the leader and a follower):
#   both get the right bytes;
# - a blob sent chunked, without a Content-Length (hashed as it comes, in
#   the event loop: its end is known only as the fetch ends): the right
#   bytes, published;
# - 20 clients pulling one cold 64 MiB blob at once: exactly one fetch
#   upstream, and all 20 get the right bytes.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;
use MirrorTest;

sub hits { MirrorTest::upstream_hits(@_) }

my $dir = tempdir('mirror-blob-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});
make_path("$dir/files");

my $good = 'the bytes of the CDN blob ' . rand();
my $cdn = RegTest::digest($good);
RegTest::spew("$dir/files/$cdn", $good);

my $chunked = join '', map { pack('N', $_) x 1024 } 1 .. 75;   # 300 KiB
substr($chunked, 0, 16) = sprintf('%016d', int rand 1e15);
my $cd = RegTest::digest($chunked);
RegTest::spew("$dir/files/$cd", $chunked);

my $slow = join '', map { pack('N', $_) x 1024 } 1 .. 512;      # 2 MiB
substr($slow, 0, 16) = sprintf('%016d', int rand 1e15);
my $sd = RegTest::digest($slow);
RegTest::spew("$dir/files/$sd", $slow);

# an upstream that says 1 MiB and closes after 512 KiB
my $CUT = 1024 * 1024;
my $cd_cut = RegTest::digest('c' x $CUT);
my $cut_port = RegTest::free_port();
my $cutter = fork() // die "fork: $!";
if ($cutter == 0) {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $cut_port, Listen => 8,
                                  ReuseAddr => 1)
        or POSIX::_exit(1);
    while (my $c = $l->accept) {
        my $req = '';
        sysread($c, $req, 65536, length $req) or last
            until $req =~ /\r\n\r\n/;
        print $c "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream"
                 . "\r\nContent-Length: $CUT\r\nConnection: close\r\n\r\n";
        for (1 .. 8) {
            print $c 'c' x 65536;
            sleep 0.02;
        }
        close $c;
    }
    POSIX::_exit(0);
}
END { kill 'KILL', $cutter if $cutter }

my $lie = 'what was asked for ' . rand();
my $lied = RegTest::digest($lie);

my $up = RegTest->new(http_extra => <<"EOF", server_extra => <<"EOF2");
    log_format files '\$request auth=[\$http_authorization]';
EOF
        location ^~ /v2/x/evil/ {
            # as many bytes as the right ones, but others
            return 200 "@{[ 'x' x length $lie ]}";
        }

        location ~ ^/v2/x/cdn/blobs/(.+)\$ {
            if (\$http_authorization = "") {
                add_header WWW-Authenticate 'Basic realm="cdn"' always;
                return 401;
            }
            return 307 /files/\$1;
        }

        location ~ ^/v2/x/chunked/blobs/(.+)\$ {
            # sub_filter drops the Content-Length: the answer is chunked
            root $dir;
            default_type application/octet-stream;
            sub_filter_types *;
            sub_filter 'never in these bytes' '';
            try_files /files/\$1 =404;
        }

        location ^~ /v2/x/cut/ {
            proxy_pass http://127.0.0.1:$cut_port;
        }

        location ~ ^/v2/x/slow/blobs/(.+)\$ {
            root $dir;
            default_type application/octet-stream;
            limit_rate 2m;
            try_files /files/\$1 =404;
        }

        location ^~ /files/ {
            alias $dir/files/;
            access_log $dir/files.log files;
        }
EOF2

RegTest::spew("$dir/creds", "user:pass\n");
my $m = MirrorTest::mirror('http://127.0.0.1:' . $up->port,
    location_extra => "registry_upstream_credentials up $dir/creds;\n",
    opts => { expect_in_log => qr/hashes to/ });
my $v2 = $m->root . '/docker/registry/v2';

# wrong bytes

my $r = $m->req('GET', "/v2/up/x/evil/blobs/$lied");
isnt($r->{status}, 200, 'wrong bytes: the answer is cut')
    or diag($r->{content});
isnt(RegTest::digest($r->{content}), $lied, 'the client never has a blob');
ok(!-e $m->blob_path($lied), 'nothing published');
is(scalar(() = glob("$v2/_ngx_tmp/*")), 0, 'no temporary file left');
like($m->error_log, qr/blob \Q$lied\E hashes to/, 'the mismatch logged');
ok(!-e "$v2/repositories/up/x/evil/_layers", 'no link either');

# a redirect, after a Basic challenge

$r = $m->req('GET', "/v2/up/x/cdn/blobs/$cdn");
is($r->{status}, 200, 'redirected blob');
is($r->{content}, $good, 'its bytes');
ok(-f $m->blob_path($cdn), 'published');
like(RegTest::slurp("$dir/files.log"), qr{GET /files/\Q$cdn\E HTTP/1.\d auth=\[-?\]},
     'the CDN got no Authorization header');
is(hits($up, qr{"GET /v2/x/cdn/blobs/[^"]*" 307 }), 1,
   'the registry\'s 307 came with the credentials');

# an upstream cut mid-body

sub temp_files { scalar(() = glob("$v2/_ngx_tmp/*")) }

sub no_temp_within {
    my ($seconds) = @_;
    my $t0 = time;
    sleep 0.1 while temp_files() && time - $t0 < $seconds;
    return temp_files() == 0;
}

$r = $m->req('GET', "/v2/up/x/cut/blobs/$cd_cut");
ok(length($r->{content}) < $CUT, 'cut upstream: a short body')
    or diag("status $r->{status}, " . length($r->{content}) . ' bytes');
ok(!-e $m->blob_path($cd_cut), 'nothing published');
ok(no_temp_within(5), 'no temporary file left');

# the leader's client hangs up mid-fetch, five times

for my $i (1 .. 5) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $m->port, Proto => 'tcp')
        or die "connect: $!";
    print $s "GET /v2/up/x/slow/blobs/$sd HTTP/1.0\r\nHost: localhost\r\n\r\n";
    my ($buf, $got) = ('', 0);
    while ($got < 64 * 1024 * $i) {
        my $n = sysread($s, $buf, 65536) or last;
        $got += $n;
    }
    close $s;
}
ok(no_temp_within(10), 'clients gone: no temporary file left');
ok(!-e $m->blob_path($sd), 'nothing published');
$r = $m->req('GET', "/v2/up/x/slow/blobs/$sd");
is(RegTest::digest($r->{content}), $sd, 'the next pull gets the blob');
ok(-f $m->blob_path($sd), 'published');

# chunked

$r = HTTP::Tiny->new->get('http://127.0.0.1:' . $up->port
                          . "/v2/x/chunked/blobs/$cd");
is($r->{headers}{'transfer-encoding'}, 'chunked',
   'the upstream sends it chunked');
$r = $m->req('GET', "/v2/up/x/chunked/blobs/$cd");
is($r->{status}, 200, 'chunked blob');
is(RegTest::digest($r->{content}), $cd, 'its bytes');
ok(-f $m->blob_path($cd), 'published');

# over HTTP/2, a leader and a follower

{
    my $h2 = MirrorTest::mirror('http://127.0.0.1:' . $up->port,
                                opts => { listen_extra => 'http2' });
    my $url = $h2->url("/v2/up/x/slow/blobs/$sd");
    my @pids = map {
        my $out = "$dir/h2-$_";
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            exec 'curl', '-s', '--http2-prior-knowledge', '-o', $out, $url;
            POSIX::_exit(127);
        }
        $pid;
    } 1 .. 2;
    waitpid($_, 0) for @pids;
    is(scalar(grep { RegTest::digest(RegTest::slurp("$dir/h2-$_")) eq $sd }
              1 .. 2), 2, 'HTTP/2: both clients got the right bytes');
    ok(-f $h2->blob_path($sd), 'HTTP/2: published');
    $h2->stop;
}

$m->stop;
$up->stop;

# 20 clients, one cold 64 MiB blob

$up = RegTest->new();
my $big = join '', map { pack('N', $_) x 4096 } 1 .. 1024;  # 16 MiB ...
$big x= 4;                                                  # ... 64 MiB
substr($big, 0, 16) = sprintf('%016d', int rand 1e15);
my $bd = $up->push_blob('lib/big', $big);
my $bhex = sha256_hex($big);

$m = MirrorTest::mirror('http://127.0.0.1:' . $up->port,
                        opts => { workers => 2 });

my @kids;
for my $i (1 .. 20) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $res = HTTP::Tiny->new(timeout => 120)->get(
            $m->url("/v2/up/lib/big/blobs/$bd"));
        my $ok = $res->{status} == 200 && sha256_hex($res->{content}) eq $bhex;
        POSIX::_exit($ok ? 0 : 1);
    }
    push @kids, $pid;
}

my $good_clients = 0;
for (@kids) {
    waitpid($_, 0);
    $good_clients++ if $? == 0;
}

is($good_clients, 20, 'all 20 clients got the right bytes');
is(hits($up, qr{"GET /v2/lib/big/blobs/}), 1, 'one fetch upstream');
ok(-f $m->blob_path($bd), 'published');

$m->stop;
$up->stop;

done_testing();
