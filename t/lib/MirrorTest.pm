package MirrorTest;

# A mirror for t/mirror*.t: a RegTest nginx whose /v2/ mirrors an
# upstream under prefix=up/ (and library=on), through the internal
# location of conf-examples/mirror.conf.
#
#   my $m = MirrorTest::mirror($upstream_url, ttl => '2s',
#                              location_extra => '...', upstream_extra => '');
#   MirrorTest::upstream_hits($upstream, qr{...})  lines of its access log

use strict;
use warnings;

use RegTest;

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

# the upstream's access log lines matching $re
sub upstream_hits {
    my ($t, $re) = @_;

    return scalar grep { $_ =~ $re }
                  split /\n/, RegTest::slurp($t->dir . '/access.log');
}

1;
