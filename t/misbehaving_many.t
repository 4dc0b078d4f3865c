#!/usr/bin/perl

# Misbehaving clients by the thousand:
# - 10,000 upload sessions opened and abandoned: the store's bytes per
#   session are bounded (a few blocks of metadata, no data), and once
#   older than the limit a purge-uploads job removes exactly them;
# - 1,000 connections each holding a PATCH open at once (half the body
#   sent): when the rest comes every chunk is accepted, and every session
#   completes into a blob of exactly its bytes.
# Memory per open upload is measured by bench/run.pl --only uploads_open,
# never asserted here.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Find;
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;

my $SESSIONS = 10_000;
my $OPEN = 1_000;

# the store in memory where there is some: 10,000 sessions are 30,000
# files and directories, made and removed with fsyncs
my $root = tempdir('regtest-many-XXXXXXXX', CLEANUP => !$ENV{REGTEST_LEAVE},
                   DIR => (-d '/dev/shm' && -w _) ? '/dev/shm'
                                                  : File::Spec->tmpdir);

my $t = RegTest->new(
    root => $root,
    events_extra => 'worker_connections 4096;',
    server_extra => <<"EOF");
        location /_registry/ {
            registry_admin on;
            registry_root $root;
        }
EOF

my $v2 = $t->root . '/docker/registry/v2';

# one keep-alive connection for the many small requests
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 30);

sub req {
    my ($method, $path, %o) = @_;
    my $r = $http->request($method, $t->url($path), \%o);
    $r->{content} //= '';
    return $r;
}

# bytes the files and directories under $dir take on the disk
sub disk_bytes {
    my ($dir) = @_;
    my ($bytes, $n) = (0, 0);
    find(sub {
        my @st = lstat $_ or return;
        $bytes += $st[12] * 512;
        $n++;
    }, $dir);
    return ($bytes, $n);
}

###############################################################################
# 10,000 sessions opened and abandoned

{
    my $start = time;
    my (@locs, %status);

    for my $i (1 .. $SESSIONS) {
        my $r = req('POST', '/v2/abandon/many/blobs/uploads/');
        $status{ $r->{status} }++;
        push @locs, $r->{headers}{location};
    }

    diag(sprintf('%d sessions opened in %.1f s', $SESSIONS, time - $start));
    is_deeply(\%status, { 202 => $SESSIONS }, "$SESSIONS sessions: all 202");

    my $uploads = "$v2/repositories/abandon/many/_uploads";
    opendir(my $dh, $uploads) or die "$uploads: $!\n";
    my @dirs = grep { !/^\./ } readdir $dh;
    closedir $dh;
    is(scalar @dirs, $SESSIONS, 'one directory per session');

    my ($bytes) = disk_bytes($uploads);
    my $per = $bytes / $SESSIONS;
    diag(sprintf('%.0f bytes of disk per abandoned session', $per));
    cmp_ok($per, '<=', 16384,
           'at most 16 KiB of disk per abandoned session');

    # a session written to in the meantime is not abandoned
    my $live = pop @locs;
    my $r = req('PATCH', $live, content => 'still here',
                headers => { 'Content-Type' => 'application/octet-stream' });
    is($r->{status}, 202, 'one of them is written to');

    # the others grow older than an hour
    my $old = time - 7200;
    for my $loc (@locs) {
        my ($id) = $loc =~ m{/([^/]+)$};
        opendir(my $sd, "$uploads/$id") or die "$id: $!\n";
        my @paths = map { "$uploads/$id/$_" } grep { !/^\.\.$/ } readdir $sd;
        closedir $sd;
        utime($old, $old, @paths) == @paths or die "utime $id: $!\n";
    }
    diag(sprintf('aged at %.1f s', time - $start));

    # registry_upload_expire (24h by default) would answer them 404 in a
    # day; purge-uploads removes them now, by the age given
    $r = req('POST', '/_registry/purge-uploads?older_than=1h');
    is($r->{status}, 202, 'purge-uploads started');
    my $job = eval { decode_json($r->{content}) } || {};

    my $report = {};
    for (1 .. 600) {
        $report = eval { decode_json(req('GET', "/_registry/jobs/$job->{id}")
                                     ->{content}) } || {};
        last if ($report->{state} // '') ne 'running';
        sleep 0.1;
    }

    diag(sprintf('purged at %.1f s', time - $start));
    is($report->{state}, 'done', 'purge-uploads done');
    is($report->{report}{removed}, $SESSIONS - 1,
       'purge-uploads removed every abandoned session');

    opendir($dh, $uploads) or die "$uploads: $!\n";
    @dirs = grep { !/^\./ } readdir $dh;
    closedir $dh;
    my ($live_id) = $live =~ m{/([^/]+)$};
    is_deeply(\@dirs, [$live_id], 'only the live session is left');

    $r = req('GET', $locs[int rand @locs]);
    is($r->{status}, 404, 'a purged session: 404');
    is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN',
       'a purged session: BLOB_UPLOAD_UNKNOWN');

    $r = req('PUT', "$live?digest=sha256:" . sha256_hex('still here'));
    is($r->{status}, 201, 'the live session completes');
}

###############################################################################
# 1,000 connections each holding an upload open

{
    my (@up, %status);

    for my $i (1 .. $OPEN) {
        my $r = req('POST', '/v2/open/many/blobs/uploads/');
        $status{ $r->{status} }++;
        push @up, { loc => $r->{headers}{location},
                    data => sprintf('upload %04d ', $i) x 100 };
    }

    is_deeply(\%status, { 202 => $OPEN }, "$OPEN sessions opened");

    # every connection sends its headers and half its body, and waits

    for my $u (@up) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $t->port, Proto => 'tcp')
            or die "connect: $!\n";
        $s->autoflush(1);
        my $half = length($u->{data}) / 2;
        print $s "PATCH $u->{loc} HTTP/1.1\r\nHost: localhost\r\n"
                 . "Connection: close\r\n"
                 . "Content-Type: application/octet-stream\r\n"
                 . 'Content-Length: ' . length($u->{data}) . "\r\n\r\n"
                 . substr($u->{data}, 0, $half);
        $u->{sock} = $s;
    }

    # all of them are open at once, and the server still answers others
    sleep 1;
    my $sel = IO::Select->new(map { $_->{sock} } @up);
    is(scalar(() = $sel->can_read(0)), 0,
       "$OPEN connections held open, none answered or closed yet");
    is(req('GET', '/v2/')->{status}, 200,
       "another client is served meanwhile");

    for my $u (@up) {
        my $s = $u->{sock};
        print $s substr($u->{data}, length($u->{data}) / 2);
    }

    my %answers;
    for my $u (@up) {
        my $reply = '';
        my $s = $u->{sock};
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 30;
        eval {
            while (sysread($s, my $buf, 4096)) {
                $reply .= $buf;
            }
        };
        alarm 0;
        close $s;
        my ($st) = $reply =~ /^HTTP\/1\.1 (\d{3})/;
        my ($range) = $reply =~ /\r\nRange: (\S+)\r\n/;
        $answers{ ($st // 'none') . ' ' . ($range // '') }++;
    }

    my $len = length $up[0]{data};
    is_deeply(\%answers, { '202 0-' . ($len - 1) => $OPEN },
              "$OPEN chunks accepted whole");

    my (%done, $bad);
    for my $u (@up) {
        my $d = 'sha256:' . sha256_hex($u->{data});
        my $r = req('PUT', "$u->{loc}?digest=$d");
        $done{ $r->{status} }++;
        $bad++ if req('GET', "/v2/open/many/blobs/$d")->{content}
                  ne $u->{data};
    }

    is_deeply(\%done, { 201 => $OPEN }, "$OPEN sessions completed");
    is($bad // 0, 0, 'every blob holds exactly its bytes');
}

$t->stop;

done_testing();
