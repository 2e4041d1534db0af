"""Run dorl's stages on Kubernetes: render Jobs / an Argo Workflow for a run config, submit them, watch them.

The modules, top-down (each imports only from those below it):

    cli                         `dorl k8s render|preflight|submit|status|logs`
    submit | status | overlay | preflight
                                talk to the cluster (cluster: the API clients); preflight: what would stop the
                                run, found before anything is created
    server_checks               the preflight's checks against the cluster (RBAC, CRDs, objects, dry runs)
    render                      every object of a run (ConfigMap, RBAC, Jobs, JobSets, Argo) and its files
    workflow                    the Argo WorkflowTemplate: one DAG task per step
    jobset | rbac               multi-node training as a JobSet; the run's RBAC
    pod                         the pod every step runs in (labels, container, pod spec, failure policy)
    plan | configmap | yamltext | cluster
                                the steps (the stage graph's nodes as Jobs) and the config checks; the mounted
                                run config and its hash; YAML text; the API clients
"""
