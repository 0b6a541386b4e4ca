"""resnext-nas: the search tool over the resnext model family, in rooms: data, training,
stats, search, export, dashboard and the commands."""
