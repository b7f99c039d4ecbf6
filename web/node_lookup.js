// Finds the nodes a preview belongs to from an execution id such as "12" or "5:12" (a node
// inside the subgraph of node 5). Like ComfyUI's own previews, the clip shows on the node
// itself and on each subgraph node that contains it.

export function nodesForExecutionId(rootGraph, executionId) {
  const parts = String(executionId).split(":");
  const nodes = [];
  let graph = rootGraph;
  for (const id of parts) {
    const node = graph?.getNodeById?.(id) ?? graph?.getNodeById?.(Number(id));
    if (!node) break;
    nodes.push(node);
    graph = node.subgraph;
  }
  return nodes.length === parts.length ? nodes : nodes.slice(0, 1);
}
