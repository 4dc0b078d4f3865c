package MirrorTest;

# A mirror for t/mirror*.t: a RegTest nginx whose /v2/ mirrors an
# upstream under prefix=up/ (and library=on), through the internal
# location of conf-examples/mirror.conf.
#
#   my $m = MirrorTest::mirror($upstream_url, ttl => '2s',
#                              location_extra => '...', upstream_extra => '');
#   MirrorTest::upstream_hits($upstream, qr{...})  lines of its access log
#   MirrorTest::pull_image($m, $repo, $ref, $img)   its manifest and blobs
#   MirrorTest::within($seconds, sub { ... })       true by then, polled
#   MirrorTest::gone_within($path)                  within 20 s (eviction)
#   my $pid = MirrorTest::stream_client($port, $path, $out, $probe);
#   my @r = MirrorTest::stream_results(@outs);       what the clients saw

use strict;
use warnings;

use Digest::SHA;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();

use RegTest;

# the bytes of a body after which a client's $probe runs
our $FIRST = 256 * 1024;

sub upstream_location {
    my (%o) = @_;

    return <<"EOF2";
        location /_registry_upstream/ {
            internal;
            proxy_pass \$registry_upstream_url;
            proxy_pass_request_headers off;
            proxy_pass_request_body off;
            proxy_set_header Authorization \$registry_upstream_authorization;
            proxy_set_header Accept \$registry_upstream_accept;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_redirect off;
            $o{extra}
        }
EOF2
}

sub mirror {
    my ($url, %o) = @_;

    my $ttl = $o{ttl} // '2s';
    my $up = $o{upstream} // "registry_upstream up $url prefix=up/ library=on;";

    return RegTest->new(
        %{ $o{opts} // {} },
        server_extra => upstream_location(extra => $o{upstream_extra} // '')
                        . ($o{server_extra} // ''),
        location_extra => "$up\n"
                          . "registry_upstream_tag_ttl $ttl;\n"
                          . ($o{location_extra} // ''),
    );
}

# GET $repo's manifest $ref (an index or an image), then, with $img (a
# RegTest::push_image answer), its config and layers; true when all came
# with the right bytes
sub pull_image {
    my ($m, $repo, $ref, $img) = @_;

    my $r = $m->req('GET', "/v2/$repo/manifests/$ref", headers => {
        Accept => 'application/vnd.oci.image.index.v1+json, '
                  . 'application/vnd.oci.image.manifest.v1+json' });
    my $ok = $r->{status} == 200;

    for my $d ($img ? ($img->{config}, @{ $img->{layers} }) : ()) {
        my $b = $m->req('GET', "/v2/$repo/blobs/$d");
        $ok &&= RegTest::digest($b->{content}) eq $d;
    }

    return $ok;
}

# $cond->() is true, or comes true within $seconds (asked every 0.5 s)
sub within {
    my ($seconds, $cond) = @_;

    for (1 .. 2 * $seconds) {
        return 1 if $cond->();
        select undef, undef, undef, 0.5;
    }

    return 0;
}

# the file is gone, or goes within 20 s (an eviction looks every 5 s)
sub gone_within {
    my ($path) = @_;

    return within(20, sub { !-e $path });
}

# the upstream's access log lines matching $re
sub upstream_hits {
    my ($t, $re) = @_;

    return scalar grep { $_ =~ $re }
                  split /\n/, RegTest::slurp($t->dir . '/access.log');
}

# One client, in a child: GET $path of 127.0.0.1:$port (with %headers),
# read to the end; what it saw goes to $out as JSON: status,
# Content-Length, the bytes it read, their sha256, the first KiB of the
# body (head), and what $probe (if any) returned once it had $FIRST bytes
# of the body.  A $probe of 'slow': a small receive buffer, and nothing
# read for 4 s after the headers (a follower's output waits).  Returns
# the child's pid.
sub stream_client {
    my ($port, $path, $out, $probe, %headers) = @_;

    my $pid = fork();
    die "fork: $!" unless defined $pid;
    return $pid if $pid;

    my %res = (status => 0, length => -1, got => 0, probe => undef);
    my $sha = Digest::SHA->new(256);
    my $body = '';

    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 120;

        my $slow = defined $probe && !ref $probe;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      $slow ? (RecvBuf => 16384) : ())
            or die "connect: $!\n";
        $probe = sub { 1 } if $slow;

        print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n"
                 . join('', map { "$_: $headers{$_}\r\n" } keys %headers)
                 . "\r\n";

        my $buf = '';
        while ($buf !~ /\r\n\r\n/) {
            sysread($s, $buf, 65536, length $buf) or die "eof in headers\n";
        }

        my ($head, $chunk) = split /\r\n\r\n/, $buf, 2;
        ($res{status}) = $head =~ m{^HTTP/1\.\d (\d+)};
        ($res{length}) = $head =~ /^Content-Length: *(\d+)/mi;
        $res{length} //= -1;

        sleep 4 if $slow;

        while (1) {
            $sha->add($chunk);
            $res{got} += length $chunk;
            $body .= $chunk if $res{got} <= 1024;

            $res{probe} = $probe->() if $probe && !defined $res{probe}
                                        && $res{got} >= $FIRST;

            my $n = sysread($s, $chunk, 65536);
            last unless $n;
        }

        alarm 0;
    };

    $res{error} = $@;
    $res{sha} = $sha->hexdigest;
    $res{head} = $body;

    RegTest::spew($out, JSON::PP->new->encode(\%res));
    POSIX::_exit(0);
}

# what the clients that wrote @files saw, in that order
sub stream_results {
    my (@files) = @_;
    return map { JSON::PP->new->decode(RegTest::slurp($_) || '{}') } @files;
}

1;
